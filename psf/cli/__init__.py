"""Command line: a Typer root `psf` and one module per command; psf-* entry points reach the same code."""
