"""Evaluation reports: per-case, per-label Dice and HD95 (report.py) and the files `psf score` reads (cases.py).

numpy and psf.io only; HD95 needs medpy (extra `eval`), imported when a distance is first computed.
Never torch: `psf score` runs in the inference-only install.
"""

from psf.eval.report import CONVENTIONS, FORMAT, case_report, check_label_values, summarize, write_report

__all__ = ["CONVENTIONS", "FORMAT", "case_report", "check_label_values", "summarize", "write_report"]
