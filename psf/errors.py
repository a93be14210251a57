"""Every error psf raises on purpose is a PsfError; the CLI turns them into one clear line."""

from __future__ import annotations

from pathlib import Path


class PsfError(Exception):
    """Base class: a problem the user can fix; the message says what and how."""


class ScanReadError(PsfError):
    """A scan could not be read. Names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BundleError(PsfError):
    """A bundle or its manifest is missing, inconsistent or corrupt."""


class EngineMismatch(BundleError):
    """An engine file does not match its manifest (hash, version or device)."""


class MissingDependency(PsfError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, what: str, extra: str):
        super().__init__(f"{what} is not installed; pip install 'privacy-sf[{extra}]'")


class UsageError(PsfError):
    """A flag or argument value makes no sense; the message names the value and the fix."""
