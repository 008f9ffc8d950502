"""lsnc: cross-entropy vs label smoothing through the lens of neural collapse (a reproduction)."""

__version__ = "0.1.0"
