"""Benchmarks: run from the repository root as scripts (python benchmarks/network.py) or modules (python -m benchmarks.network)."""
