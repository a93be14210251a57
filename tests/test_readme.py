"""The README's first commands are the contract; check they exist and that the commands it names do too."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_first_two_commands_are_make_demo_and_make_test():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[:2] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_targets_resolve():
    for target in ("demo", "test"):
        result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_commands_named_in_readme_have_help():
    readme = (ROOT / "README.md").read_text()
    for command in sorted(set(re.findall(r"`(psf(?:-\w+)?) ", readme))):
        from typer.testing import CliRunner

        from psf.cli.main import app

        args = ["--help"] if command == "psf" else [command.removeprefix("psf-").replace("psf", ""), "--help"]
        result = CliRunner().invoke(app, [a for a in args if a])
        assert result.exit_code == 0, (command, result.output)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_runs_on_tiny_budgets(tmp_path):
    """The README's first command, as written (the Makefile's demo recipe: data, train, export, infer, score), with
    tiny budgets so the first page cannot rot. It uses the venv `make test` made; Dice is not judged here (the
    budget is far too small), only that every step ran and the last line has the README's form."""
    import os
    import sys

    venv = Path(sys.executable).parent.parent  # `-o` below: never reinstall it from a test
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", f"VENV={venv}", "-o", f"{venv}/bin/.psf-installed", f"DEMO={tmp_path / 'demo'}",
         "DEMO_TRAIN_FLAGS=--steps 4 --views 1 --min-ceiling 0 -q", "DEMO_EXPORT_FLAGS=--precision fp32"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"demo: test dice gm=[\d.]+ wm=[\d.]+ mean=[\d.]+ \| infer \d+ slices in [\d.]+ s", last), last
    assert (tmp_path / "demo" / "bundle" / "psf.json").is_file(), sorted(str(p) for p in tmp_path.rglob("*"))[:20]
