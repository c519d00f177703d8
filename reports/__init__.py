"""Side-by-side comparisons of finished runs (summary.json files), as JSON, Markdown and a plot."""
from reports.compare import compare, write_comparison

__all__ = ["compare", "write_comparison"]
