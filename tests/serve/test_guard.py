"""The refusal log's rate limit and the one-line messages, without a server."""

from __future__ import annotations

from psf.serve.guard import RefusalLog, RequestRefused, one_line


def test_refusal_log_writes_a_few_lines_per_window_then_counts():
    lines, now = [], [0.0]
    log = RefusalLog(lines.append, lines_per_window=3, window_s=60.0, clock=lambda: now[0])
    for _ in range(1000):
        log.refused("m", "nonfinite", "z: contains NaN\n  File \"/srv/x.py\", line 1")
    log.refused("m", "shape", "z: shape [1]")  # another reason has its own budget
    assert len(lines) == 4 and all("\n" not in line and "/srv" not in line for line in lines)
    now[0] = 61.0
    log.refused("m", "nonfinite", "z: contains NaN")
    assert lines[4] == "psf: 997 more nonfinite refusal(s) not logged in the last 60 s" and len(lines) == 6


def test_debug_logs_every_refusal_and_messages_stay_one_line():
    lines = []
    log = RefusalLog(lines.append, lines_per_window=1, debug=True)
    for _ in range(10):
        log.refused("m", "batch", "too many")
    assert len(lines) == 10
    assert one_line("a\nb") == "a" and len(one_line("x" * 1000)) == 300 and one_line("") == ""
    assert isinstance(RequestRefused("dtype", "z: dtype"), ValueError)
