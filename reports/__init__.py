"""Reports of finished runs (summary.json files): side-by-side comparisons, whole costs, the
accuracy-for-bytes frontier of a grid and the network benchmark's times to target, as JSON, CSV,
Markdown and plots."""
from reports.compare import compare, write_comparison

__all__ = ["compare", "write_comparison"]
