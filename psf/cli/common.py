"""What every command shares: one place that turns PsfError into one clear line and an exit code."""

from __future__ import annotations

import functools
import os
from typing import Annotated

import typer
from rich.markup import escape

from psf.errors import PsfError
from psf.progress import stderr

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors (or set PSF_DEBUG=1).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only the summary and errors.")]


def reports_errors(command):
    """Catch PsfError (and a missing optional package) in one place: print `error: ...`, exit 1."""

    @functools.wraps(command)
    def wrapper(*args, debug: bool = False, **kwargs):
        try:
            return command(*args, **kwargs)
        except PsfError as exc:
            if debug or os.environ.get("PSF_DEBUG"):
                raise
            stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except ModuleNotFoundError as exc:
            if debug or os.environ.get("PSF_DEBUG"):
                raise
            extra = "train" if exc.name in ("torch", "onnx", "onnxscript", "nilearn") else "dev"
            stderr.print(f"[red]error:[/red] {exc.name} is not installed; pip install 'privacy-sf[{extra}]'", highlight=False)
            raise typer.Exit(1) from None

    return wrapper
