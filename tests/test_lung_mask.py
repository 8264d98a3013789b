"""Lung masks: Dice against the phantom's ground truth, real LIDC nodules inside, airways / table /
juxta-pleural nodules on a hand-built chest."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsgan.data.phantom import make_phantom
from ctsgan.nodules.lung_mask import dice, lung_mask
from ctsgan.nodules.voi import ellipsoid_mask

NS = "{http://www.nih.gov}"


@pytest.mark.parametrize(("size", "seed"), [(32, 0), (32, 1), (32, 2), (64, 0)])
def test_dice_against_phantom_ground_truth(size: int, seed: int) -> None:
    ph = make_phantom(size, seed, nodules=True)
    mask = lung_mask(ph.hu, ph.spacing_zyx)
    assert dice(mask, ph.lung_mask) >= 0.95
    for centre, _ in ph.nodules:  # nodules inside the lungs stay in the mask
        assert mask[tuple(int(round(v)) for v in centre)]


def _hand_built_chest() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(hu, expected lung mask, trachea voxels above the carina, the juxta-pleural nodule's voxels inside
    the lung outline); 1 mm voxels."""
    d, h, w = 40, 64, 64
    zz, yy, xx = np.ogrid[:d, :h, :w]
    hu = np.full((d, h, w), -1000.0)
    body = ((yy - 30) / 24.0) ** 2 + ((xx - 32) / 30.0) ** 2 <= 1
    hu[np.broadcast_to(body, hu.shape)] = 40.0
    hu[:, 56:60, 4:60] = 200.0  # table under the body ...
    hu[:, 57:59, 10:54] = -1000.0  # ... with a hollow inside (enclosed air)
    left = ellipsoid_mask((d, h, w), (16, 14, 9), (22, 30, 18))
    right = ellipsoid_mask((d, h, w), (16, 14, 9), (22, 30, 46))
    lungs = left | right
    hu[lungs] = -850.0
    # a nodule touching the lateral wall of the left lung from inside (it bites into the air outline)
    nodule = ellipsoid_mask((d, h, w), (4, 4, 4), (22, 30, 11))
    hu[nodule] = 30.0
    # trachea down the midline from slice 0 to the carina at z=14, then a bronchus into each lung
    trachea = np.zeros(hu.shape, dtype=bool)
    trachea[:15] = np.broadcast_to((yy - 30) ** 2 + (xx - 32) ** 2 <= 9, (15, h, w))
    hu[trachea] = -1000.0
    hu[14:17, 28:33, 20:44] = -1000.0  # main bronchi joining both lungs
    expected = lungs.copy()  # the nodule's part inside the lung outline belongs to the lung
    hu += np.random.default_rng(0).normal(0, 15, hu.shape)
    return hu.astype(np.int16), expected, trachea[:12], nodule & lungs


def test_table_airways_and_juxta_pleural_nodule() -> None:
    hu, expected, trachea_top, inner = _hand_built_chest()
    mask = lung_mask(hu, (1.0, 1.0, 1.0))
    assert dice(mask, expected) >= 0.95
    assert not mask[:12][trachea_top].any(), "trachea above the carina is in the mask"
    assert not mask[:, 56:60].any(), "table air is in the mask"
    # the juxta-pleural nodule (soft tissue, so not air) comes back through the closing; what stays
    # out is the part at the very tip of the thin lung that a rolling disk cannot reach
    assert mask[inner].mean() > 0.7
    assert lung_mask(hu, (1.0, 1.0, 1.0), closing_radius_mm=0.5)[inner].mean() < 0.05
    # the head at the far end: flipping z flips the mask
    assert np.array_equal(lung_mask(hu[::-1], (1.0, 1.0, 1.0)), mask[::-1])
    # without airway removal the trachea is kept (it is air inside the body)
    assert lung_mask(hu, (1.0, 1.0, 1.0), remove_airways=False)[:12][trachea_top].mean() > 0.5


def _read_series(series: Path) -> tuple[np.ndarray, tuple[float, float, float], list[float]]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    img = reader.Execute()
    zpos = [img.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(img.GetDepth())]
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing())), zpos  # type: ignore[return-value]


@pytest.mark.realdata
@pytest.mark.parametrize("patient", ["LIDC-IDRI-0001", "LIDC-IDRI-0003"])
def test_lidc_nodule_centres_fall_in_the_mask(shared_ct_dir: Path, patient: str) -> None:
    series = next(p.parent for p in (shared_ct_dir / "lidc" / patient).glob("*/*/*.xml"))
    hu, spacing, zpos = _read_series(series)
    mask = lung_mask(hu, spacing)
    root = ET.parse(next(series.glob("*.xml"))).getroot()
    checked = 0
    for nod in root.iter(NS + "unblindedReadNodule"):
        pts = [
            (float(roi.find(NS + "imageZposition").text), float(e.find(NS + "yCoord").text),
             float(e.find(NS + "xCoord").text))
            for roi in nod.iter(NS + "roi") if roi.find(NS + "inclusion").text.strip().upper() == "TRUE"
            for e in roi.iter(NS + "edgeMap")
        ]
        z, y, x = np.mean(pts, axis=0)
        k = int(np.argmin([abs(p - z) for p in zpos]))
        if abs(zpos[k] - z) > spacing[0]:  # the XML covers the whole scan; the slab only part of it
            continue
        yi, xi = int(round(y)), int(round(x))
        # inside, or on the edge: within 2 pixels of the mask
        assert mask[k, yi - 2 : yi + 3, xi - 2 : xi + 3].any(), f"{nod.find(NS + 'noduleID').text} outside"
        checked += 1
    assert checked >= 4  # all four readers' nodules lie in these slabs


def test_errors_and_dice_by_hand() -> None:
    with pytest.raises(ValueError, match="z, y, x"):
        lung_mask(np.zeros((4, 4)), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        lung_mask(np.zeros((4, 4, 4)), (1, 0, 1))
    a = np.zeros((2, 2, 2), dtype=bool)
    b = a.copy()
    a[0, 0, :] = True  # 2 voxels
    b[0, :, 0] = True  # 2 voxels, 1 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert not lung_mask(np.full((8, 8, 8), 40, dtype=np.int16), (1, 1, 1)).any()
