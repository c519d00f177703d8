"""Reports of finished runs (summary.json files): side-by-side comparisons, whole costs and the
accuracy-for-bytes frontier of a grid, as JSON, CSV, Markdown and plots."""
from reports.compare import compare, write_comparison

__all__ = ["compare", "write_comparison"]
