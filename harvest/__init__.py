"""harvest: collect crowd photos into a content-addressed pool (search, fetch, dedup, CLIP filter, report)."""

__version__ = "0.1.0"
