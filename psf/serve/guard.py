"""What the map server does with a request it refuses: one line to the client, at most one line to its log.

A refusal names what was wrong with the request (dtype, shape, batch, values) and nothing about the
server: no traceback, no path, no library. The log is rate-limited: a client that sends 10,000 bad
requests must not fill the disk or bury the lines that matter. The backend that sees the request does not
see the client's address (Triton does not pass it on), so the limit is per kind of refusal, which bounds
what any one client, or all of them together, can write.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

REASONS = ("input", "dtype", "shape", "batch", "nonfinite", "internal")


class RequestRefused(ValueError):
    """A request off the wire contract. `reason` is one of REASONS (a metrics label); str() is the client's line."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def one_line(text: str, limit: int = 300) -> str:
    """The first line of `text`, at most `limit` characters: what may reach a client or a log line."""
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


@dataclass
class RefusalLog:
    """Writes one line per refused request, at most `lines_per_window` per reason per `window_s`.

    Past the limit, refusals are only counted; the first line of the next window says how many were not
    logged. With `debug` every refusal is logged."""

    emit: Callable[[str], None]
    lines_per_window: int = 5
    window_s: float = 60.0
    debug: bool = False
    clock: Callable[[], float] = time.monotonic
    _windows: dict = field(default_factory=dict)  # reason -> [window start, lines written, refusals not logged]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refused(self, model: str, reason: str, message: str) -> None:
        now = self.clock()
        with self._lock:
            start, written, dropped = self._windows.get(reason, (now, 0, 0))
            if now - start >= self.window_s:
                if dropped:
                    self.emit(f"psf: {dropped} more {reason} refusal(s) not logged in the last {self.window_s:.0f} s")
                start, written, dropped = now, 0, 0
            if self.debug or written < self.lines_per_window:
                self.emit(f"psf: refused a request to {model} ({reason}): {one_line(message)}")
                written += 1
            else:
                dropped += 1
            self._windows[reason] = (start, written, dropped)
