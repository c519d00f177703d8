"""From a weight's last recorded values to the nowcaster's inputs, and from its output back.

A history is [HISTORY, n]: row 0 the oldest recording, each column one scalar weight. Each weight
is normalised on its own, as the reference does: shift so the oldest value is 0, divide by twice
its range over the history (plus small guards), so the history spans at most [-1, 1] and a flat
weight stays finite. The inputs are the normalised history (5) and its successive differences (4);
the network outputs a change in those units, which `decode` adds to the last value.

Every function works on numpy arrays and on TensorFlow tensors alike (same arithmetic, one source
of truth); only the reductions differ, and `_reduce` picks them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

HISTORY = 5          # recordings per prediction, as in the reference
RANGE_GUARD = 1e-8   # added to the range (a weight that never moved)
SCALE_GUARD = 1e-5   # added again before dividing, as the reference does


class Encoded(NamedTuple):
    normed: object   # [HISTORY, n]: the history minus its first value, over `scale`
    deltas: object   # [HISTORY - 1, n]: successive differences of `normed`
    scale: object    # [n]: 2 * (range + guards); one normalised unit in weight units
    last: object     # [n]: the last recorded value, what a change is added to


def _reduce(x, how: str):
    """max or min over the history axis, for numpy or TensorFlow."""
    if isinstance(x, np.ndarray):
        return getattr(np, how)(x, axis=0)
    import tensorflow as tf

    return getattr(tf, f"reduce_{how}")(x, axis=0)


def encode(history) -> Encoded:
    """The network's inputs for a [HISTORY, n] history (numpy float32 or a tf float32 tensor)."""
    shifted = history - history[0:1]
    scale = (_reduce(shifted, "max") - _reduce(shifted, "min") + RANGE_GUARD + SCALE_GUARD) * 2.0
    normed = shifted / scale
    return Encoded(normed, normed[1:] - normed[:-1], scale, history[-1])


def decode(change, encoded: Encoded):
    """New weights [n] from a normalised change [n] (the network's output)."""
    return encoded.last + change * encoded.scale


def target_change(target, encoded: Encoded):
    """The normalised change that `decode` would turn into `target` [n]: what training regresses."""
    return (target - encoded.last) / encoded.scale
