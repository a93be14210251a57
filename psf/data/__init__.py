"""Demo data sets built from files that installed packages ship (no downloads)."""
