"""Gradient compression for the comparison methods: Top-k with error feedback, and DGC.

Graph-mode building blocks (they work eagerly too): a compressor owns its state variables and
turns a list of gradients into a Compressed payload plus the op that updates its state.
"""
from compression.common import Compressed, densify
from compression.dgc import DGC, warmup_ratio
from compression.topk import TopK

__all__ = ["Compressed", "DGC", "TopK", "densify", "warmup_ratio"]
