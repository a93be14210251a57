"""privacy-sf: encoding-based privacy-preserving segmentation (Privacy-SF) made deployable."""

__version__ = "0.1.0"
