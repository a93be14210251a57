"""Dice/IoU (psf.metrics), HD95 (medpy behind psf.metrics.hd95) and the per-case report (psf.eval), on
cases whose answers are known by hand."""

import importlib.util
import json

import numpy as np
import pytest

from psf.errors import UsageError
from psf.eval import case_report, summarize
from psf.metrics import case_dice, confusion_counts, dice_iou, hd95, report

needs_medpy = pytest.mark.skipif(importlib.util.find_spec("medpy") is None,
                                 reason="HD95 needs medpy (pip install 'privacy-sf[eval]')")
SPACING = (0.5, 0.8, 2.5)  # mm along axes 0, 1, 2: every axis different, so a swapped axis changes the answer


def test_dice_and_iou_on_known_counts():
    truth = np.array([0, 1, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    dice, iou = dice_iou(confusion_counts(pred, truth, 3))
    np.testing.assert_allclose(dice, [2 / 3, 0.8, 0.5])
    np.testing.assert_allclose(iou, [0.5, 2 / 3, 1 / 3])
    assert report(confusion_counts(pred, truth, 3), ["o", "a", "b"])["mean_dice"] == round((0.8 + 0.5) / 2, 4)


def _cubes(offset: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two 3x3x3 cubes, the second moved by `offset` voxels (far enough that they do not touch)."""
    truth, pred = np.zeros((16, 16, 16), bool), np.zeros((16, 16, 16), bool)
    truth[2:5, 2:5, 2:5] = True
    a, b, c = (2 + o for o in offset)
    pred[a : a + 3, b : b + 3, c : c + 3] = True
    return pred, truth


@needs_medpy
@pytest.mark.parametrize(("offset", "expected_mm"), [((0, 0, 5), 5 * 2.5), ((4, 0, 0), 4 * 0.5), ((0, 6, 0), 6 * 0.8)])
def test_hd95_of_offset_cubes_is_the_offset_in_mm_of_that_axis(offset, expected_mm):
    """Each surface voxel of one cube is (offset - 2, - 1 or - 0) voxels from the other cube's near face; the far
    face's voxels (9 of 26 per cube, more than 5%) set the 95th percentile: the offset times that axis' spacing."""
    pred, truth = _cubes(offset)
    assert hd95(pred, truth, SPACING) == pytest.approx(expected_mm)
    assert hd95(truth, pred, SPACING) == pytest.approx(expected_mm)


@needs_medpy
def test_hd95_leaves_out_the_farthest_five_percent_and_cropping_changes_nothing():
    """A 10x10 square plus one stray pixel: 1 of 73 surface distances (1.4%) is far, so HD95 is 0 while the
    plain Hausdorff distance is the stray pixel's; the crop around the masks gives medpy's whole-array value."""
    from medpy.metric.binary import hd as medpy_hd
    from medpy.metric.binary import hd95 as medpy_hd95

    truth = np.zeros((40, 30), bool)
    truth[5:15, 5:15] = True
    pred = truth.copy()
    pred[35, 25] = True
    assert hd95(pred, truth, (1.5, 0.7)) == 0.0
    assert medpy_hd(pred, truth, voxelspacing=(1.5, 0.7)) == pytest.approx(np.hypot(21 * 1.5, 11 * 0.7))
    rng = np.random.default_rng(0)
    blobs = rng.random((3, 24, 20, 12)) > 0.97
    blobs[1, :2] = blobs[2, :, -1] = True  # touching the array's edges too
    for a, b in [(blobs[0], blobs[1]), (blobs[1], blobs[2])]:
        assert hd95(a, b, SPACING) == pytest.approx(medpy_hd95(a, b, voxelspacing=SPACING))


@needs_medpy
def test_hd95_refuses_an_empty_mask():
    with pytest.raises(ValueError, match="empty"):
        hd95(np.zeros((4, 4), bool), np.ones((4, 4), bool), (1.0, 1.0))


@needs_medpy
def test_case_report_names_every_undefined_value():
    """Label 1 is found but shifted; 2 is missed; 3 is predicted where the reference has none; 4 is absent."""
    labels = ["background", "shifted", "missed", "extra", "absent"]
    truth, pred = np.zeros((16, 16, 16), np.int64), np.zeros((16, 16, 16), np.int64)
    p1, t1 = _cubes((0, 0, 5))
    pred[p1], truth[t1] = 1, 1
    truth[10:13, 10:13, 10:13] = 2
    pred[12:14, 2:4, 2:4] = 3
    report = case_report(pred, truth, labels, SPACING)
    rows = report["labels"]
    assert list(rows) == labels[1:] and report["unit"] == "mm" and report["spacing"] == list(SPACING)
    assert rows["shifted"] == {"dice": 0.0, "hd95": 12.5, "voxels_pred": 27, "voxels_ref": 27}
    assert rows["missed"]["dice"] == 0.0 and rows["missed"]["hd95"] is None
    assert rows["missed"]["undefined"] == {"hd95": "prediction empty"}
    assert rows["extra"]["undefined"] == {"hd95": "reference empty"} and rows["extra"]["voxels_pred"] == 8
    assert rows["absent"] == {"dice": None, "hd95": None, "voxels_pred": 0, "voxels_ref": 0,
                              "undefined": {"dice": "both empty", "hd95": "both empty"}}
    assert "hd95" not in case_report(pred, truth, labels, SPACING, hd95=False)["labels"]["shifted"]


@needs_medpy
def test_summary_means_skip_undefined_values_and_count_them():
    labels = ["background", "a"]
    pred, truth = _cubes((0, 0, 5))
    perfect = case_report(truth.astype(int), truth.astype(int), labels, SPACING)
    shifted = case_report(pred.astype(int), truth.astype(int), labels, SPACING)
    missed = case_report(np.zeros(truth.shape, int), truth.astype(int), labels, SPACING)
    summary = summarize({"perfect": perfect, "shifted": shifted, "missed": missed}, labels)
    mean = summary["mean"]["a"]
    assert mean["dice"] == pytest.approx(1 / 3, abs=1e-4) and mean["dice_cases"] == 3
    assert mean["hd95"] == pytest.approx(12.5 / 2) and mean["hd95_cases"] == 2
    assert mean["undefined"] == {"hd95": {"prediction empty": 1}}
    assert summary["hd95_implementation"].startswith("medpy ")
    json.dumps(summary, allow_nan=False)  # JSON-safe: no NaN or inf anywhere


@needs_medpy
def test_a_2d_image_is_scored_in_2d_and_label_values_are_checked():
    """(rows, cols, 1) as 2D images are read: the singleton axis is dropped, else every pixel would be surface
    (a 4x4 square centred in a 10x10 one: 2D contours 3 * sqrt(2) apart at the corners; 3.61 if all were surface)."""
    truth, pred = np.zeros((20, 20), np.int64), np.zeros((20, 20), np.int64)
    truth[4:14, 4:14] = 1
    pred[7:11, 7:11] = 1
    image = case_report(pred[:, :, None], truth[:, :, None], ["bg", "x"], (1.0, 1.0, 1.0))
    assert image["labels"]["x"]["hd95"] == pytest.approx(3 * np.sqrt(2)) and image["shape"] == [20, 20, 1]
    with pytest.raises(UsageError, match="label value 2"):
        case_report(pred * 2, truth, ["bg", "x"], (1.0, 1.0))


def test_case_dice_is_undefined_only_when_both_are_empty():
    counts = confusion_counts(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 4)
    assert case_dice(counts)[1:] == [pytest.approx(2 / 3), None, None]
    assert dice_iou(counts)[0][2] == 1.0  # the pooled convention is unchanged
