"""psf score on small label files written here: the demo's summary line unchanged, the JSON report's Dice and
HD95 in mm from the files' geometry, label names from dataset.json, and clear refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from psf.cli.main import app

needs_medpy = pytest.mark.skipif(importlib.util.find_spec("medpy") is None,
                                 reason="HD95 needs medpy (pip install 'privacy-sf[eval]')")
SPACING = (0.5, 0.8, 2.5)


def _affine(spacing=SPACING) -> np.ndarray:
    """Voxel -> mm with a rotation about the third axis, so the spacing must come from the columns' lengths."""
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = (-10, 20, 5)
    return affine


def _write(path: Path, labels: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), _affine() if affine is None else affine), path)


def _score(*args: str):
    result = CliRunner().invoke(app, ["score", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def cases(tmp_path) -> tuple[Path, Path]:
    """Two cases. c1: label 1 a 3x3x3 cube moved 5 voxels (12.5 mm) along the 2.5 mm axis, label 2 exact.
    c2: label 1 exact, label 2 missed (empty prediction)."""
    truth, pred = np.zeros((2, 12, 10, 16), np.uint8), np.zeros((2, 12, 10, 16), np.uint8)
    truth[:, 2:5, 2:5, 2:5] = 1
    pred[0, 2:5, 2:5, 7:10] = 1
    pred[1, 2:5, 2:5, 2:5] = 1
    truth[:, 8:11, 6:9, 12:15] = 2
    pred[0, 8:11, 6:9, 12:15] = 2
    data = tmp_path / "data"
    for i, name in enumerate(("c1", "c2")):
        _write(data / "test" / "labels" / f"{name}.nii.gz", truth[i])
        _write(tmp_path / "out" / f"{name}_mask.nii.gz", pred[i])
    return tmp_path / "out", data / "test" / "labels"


def test_demo_line_is_unchanged(cases, tmp_path):
    """Without dataset.json and --labels the MNI152 names give `gm`/`wm`, exactly as `make demo` prints them."""
    out, labels = cases
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"slices": 32, "seconds": 1.234}))
    code, stdout, stderr = _score(out, labels, "--run-report", run, "--prefix", "demo:")
    assert code == 0, stderr
    # grey_matter: c1 0 of 27, c2 27 of 27 -> 2*27 / (2*27 + 27 + 27) = 0.5; white_matter: 27 of 54 found.
    assert stdout == "demo: test dice gm=0.5000 wm=0.6667 mean=0.5833 | infer 32 slices in 1.23 s\n"
    assert not (tmp_path / "score.json").exists()


@needs_medpy
def test_report_has_dice_and_hd95_in_mm_per_case_and_label(cases, tmp_path):
    out, labels = cases
    (labels.parent.parent / "dataset.json").write_text(json.dumps({"labels": ["background", "anterior", "posterior"]}))
    report = tmp_path / "score.json"
    code, stdout, stderr = _score(out, labels, "--report", report)
    assert code == 0, stderr
    assert stdout == "test dice a=0.5000 p=0.6667 mean=0.5833\n"
    doc = json.loads(report.read_text())
    assert doc["format"] == "psf-eval/1" and doc["labels_from"].endswith("dataset.json")
    assert doc["line"] == stdout.strip() and doc["pooled"]["mean_dice"] == 0.5833
    c1, c2 = doc["cases"]["c1"], doc["cases"]["c2"]
    assert c1["spacing"] == pytest.approx(SPACING) and c1["unit"] == "mm"
    assert c1["labels"]["anterior"]["hd95"] == pytest.approx(12.5) and c1["labels"]["anterior"]["dice"] == 0.0
    assert c1["labels"]["posterior"] == {"dice": 1.0, "hd95": 0.0, "voxels_pred": 27, "voxels_ref": 27}
    assert c2["labels"]["posterior"]["hd95"] is None
    assert c2["labels"]["posterior"]["undefined"] == {"hd95": "prediction empty"}
    assert doc["mean"]["anterior"] == {"dice": 0.5, "dice_cases": 2, "hd95": 6.25, "hd95_cases": 2}
    assert doc["mean"]["posterior"]["undefined"] == {"hd95": {"prediction empty": 1}}
    assert "nnU-Net" in doc["conventions"]["dice"] and doc["hd95_implementation"].startswith("medpy")


@needs_medpy
def test_png_masks_are_scored_in_pixels(tmp_path):
    truth = np.zeros((20, 30), np.uint8)
    truth[5:10, 5:10] = 1
    Image.fromarray(truth).save(tmp_path / "img.png")
    (tmp_path / "out").mkdir()
    Image.fromarray(np.roll(truth, 4, axis=1)).save(tmp_path / "out" / "img_mask.png")
    report = tmp_path / "score.json"
    code, stdout, stderr = _score(tmp_path / "out", tmp_path / "img.png", "--labels", "bg,lesion", "--report", report)
    assert code == 0, stderr
    case = json.loads(report.read_text())["cases"]["img"]
    assert case["unit"] == "pixel" and case["labels"]["lesion"]["hd95"] == pytest.approx(4.0)
    assert stdout.startswith("test dice l=0.2000 ")  # 1 column of 5 overlaps


def test_refusals_name_the_file_and_the_fix(cases, tmp_path):
    out, labels = cases
    code, _, stderr = _score(out, labels, "--labels", "bg,one")
    assert code == 1 and "c1_mask.nii.gz has label value 2" in stderr and "--labels" in stderr
    _write(out / "c2_mask.nii.gz", np.zeros((12, 10, 16)), _affine((0.5, 0.8, 3.0)))
    code, _, stderr = _score(out, labels)
    assert code == 1 and "voxel size 0.5x0.8x3 mm" in stderr and "c2.nii.gz" in stderr
    (labels.parent.parent / "dataset.json").write_text("{not json")
    code, _, stderr = _score(out, labels)
    assert code == 1 and "dataset.json: cannot read label names" in stderr


def test_without_medpy_the_line_works_and_report_names_the_extra(cases, tmp_path, monkeypatch):
    """The inference-only install has no medpy: the summary line needs none; --report says what to install."""
    for name in ("medpy", "medpy.metric", "medpy.metric.binary"):
        monkeypatch.setitem(sys.modules, name, None)  # what Python does for a package that is not installed
    out, labels = cases
    code, stdout, _ = _score(out, labels)
    assert code == 0 and stdout.startswith("test dice gm=0.5000 ")
    code, _, stderr = _score(out, labels, "--report", tmp_path / "score.json")
    assert code == 1 and "pip install 'privacy-sf[eval]'" in stderr and "medpy" in stderr
    assert not (tmp_path / "score.json").exists()


@needs_medpy
def test_score_and_its_report_never_import_torch(cases, tmp_path):
    """`psf score --report` runs in the inference-only install (no torch): a whole run, in a fresh process."""
    out, labels = cases
    code = ("import sys; from typer.testing import CliRunner; from psf.cli.main import app; "
            f"result = CliRunner().invoke(app, ['score', {str(out)!r}, {str(labels)!r}, '--report', {str(tmp_path / 's.json')!r}]); "
            "assert result.exit_code == 0, result.output; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "s.json").is_file()
