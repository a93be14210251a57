"""Progress bars on stderr (rich), silent under --quiet. Every task names its unit (add_task(..., unit="s"))."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True, soft_wrap=True)  # one message, one line: grep-able logs


@contextmanager
def progress_bar(quiet: bool = False):
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} {task.fields[unit]}"), TimeElapsedColumn(),
        TimeRemainingColumn(), console=stderr, disable=quiet, transient=False,
    )
    with progress:
        yield progress
