"""Runners for the bundle's graphs (numpy in, numpy out). Never imports torch."""
