"""Top-k sparsification with error feedback (as in GRACE).

Per tensor: acc = gradient + residual; send the k = max(1, floor(ratio * n)) entries of largest
magnitude of acc; residual <- acc - sent (acc with the sent entries zeroed). Nothing is lost: over
any number of steps, everything sent plus the current residual equals the sum of the gradients.
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from compression.common import Compressed, Shape, device_scope, finish, offsets_of, sizes_of, zero_at


def topk_count(ratio: float, size: int) -> int:
    """How many entries of a tensor of `size` values Top-k sends."""
    return max(1, math.floor(ratio * size))


class TopK:
    def __init__(self, shapes: Sequence[Shape], ratio: float, device: str | None = None) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"the Top-k ratio must be in (0, 1], got {ratio}")
        self.shapes = [tuple(int(d) for d in shape) for shape in shapes]
        self.sizes = sizes_of(self.shapes)
        self.offsets = offsets_of(self.sizes)
        self.ratio = ratio
        self.counts = [topk_count(ratio, size) for size in self.sizes]
        self.device = device
        with device_scope(device):
            self.variables: list[tf.Variable] = [
                tf.Variable(tf.zeros(shape), trainable=False, name=f"topk_residual_{i}") for i, shape in enumerate(self.shapes)
            ]

    def compress(self, grads: Sequence[tf.Tensor]) -> Compressed:
        if len(grads) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} gradients, got {len(grads)}")
        values, indices, assigns = [], [], []
        with device_scope(self.device):
            for grad, residual, k, offset in zip(grads, self.variables, self.counts, self.offsets):
                acc = tf.reshape(tf.cast(grad, tf.float32), [-1]) + tf.reshape(residual.read_value(), [-1])
                _, picked = tf.math.top_k(tf.abs(acc), k, sorted=False)
                values.append(tf.gather(acc, picked))
                indices.append(picked + offset)
                left = tf.reshape(zero_at(acc, picked), residual.shape)
                assigns.append(lambda residual=residual, left=left: residual.assign(left))
            return finish(values, indices, [], assigns)
