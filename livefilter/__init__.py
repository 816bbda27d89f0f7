"""livefilter: a live anime filter for webcams, clips and stills."""

__version__ = "0.1.0"
