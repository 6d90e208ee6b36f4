"""Edge camera node for live watchlist face matching."""

__version__ = "0.1.0"
