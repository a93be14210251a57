"""The `psf` root command and the psf-* entry points onto the same commands.

Every command module imports its heavy dependencies inside the command, so `--help` is instant and
`psf-infer` never loads torch.
"""

from __future__ import annotations

import typer

from psf import __version__
from psf.cli import audit, bench, build, data, export, fed, infer, key, score, serve, train

app = typer.Typer(name="psf", help=f"privacy-sf {__version__}: privacy-preserving segmentation (Privacy-SF).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(data.app, name="data")
app.add_typer(key.app, name="key")
app.add_typer(fed.app, name="fed")
app.command("train")(train.train)
app.command("export")(export.export)
app.command("build")(build.build)
app.command("infer")(infer.infer)
app.command("bench")(bench.bench)
app.command("score")(score.score)
app.command("serve")(serve.serve)
app.command("audit")(audit.audit)


def _single(command) -> None:
    """Run one command as its own program (psf-infer == psf infer)."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command()(command)
    single()


def train_entry() -> None:
    _single(train.train)


def export_entry() -> None:
    _single(export.export)


def build_entry() -> None:
    _single(build.build)


def infer_entry() -> None:
    _single(infer.infer)


def bench_entry() -> None:
    _single(bench.bench)


def serve_entry() -> None:
    _single(serve.serve)


def audit_entry() -> None:
    _single(audit.audit)
