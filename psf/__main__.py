"""`python -m psf` == `psf`."""

from psf.cli.main import app

app()
