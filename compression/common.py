"""What a compressor hands to the wire, and how a receiver turns it back into one flat vector."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

Shape = Sequence[int]
MAX_INDEX = 2**31 - 1  # indices travel as int32


@dataclass
class Compressed:
    """One step's payload from one worker.

    values:  float32 [m], the sent entries of every sparsified tensor, concatenated.
    indices: int32 [m], their positions in the concatenation of ALL tensors flattened, in the
             order the tensors were given (dense ones included, so a receiver needs no offsets).
    dense:   float32 [d], the tensors that go dense, flattened and concatenated in order.
    update:  the state update; it runs after values/indices/dense are computed (control
             dependencies), so fetch them in the same session.run. None when built eagerly:
             the state has then already been updated.
    """

    values: tf.Tensor
    indices: tf.Tensor
    dense: tf.Tensor
    update: tf.Operation | None


def sizes_of(shapes: Sequence[Shape]) -> list[int]:
    """Element counts of the tensors; rejects empty tensors and totals beyond int32 indices."""
    sizes = [math.prod(shape) for shape in shapes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every tensor needs at least one element, got shapes {list(shapes)}")
    if sum(sizes) > MAX_INDEX:
        raise ValueError(f"{sum(sizes)} values in all do not fit int32 indices")
    return sizes


def offsets_of(sizes: Sequence[int]) -> list[int]:
    """Where each tensor starts in the concatenation of all tensors flattened."""
    return [0, *np.cumsum(sizes)[:-1].tolist()]


def device_scope(device: str | None):
    return tf.device(device) if device else contextlib.nullcontext()


def zero_at(flat: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """`flat` with the entries at `positions` (int32 [k], distinct) set to zero."""
    return tf.tensor_scatter_nd_update(flat, positions[:, None], tf.zeros_like(positions, dtype=flat.dtype))


def finish(values: list[tf.Tensor], indices: list[tf.Tensor], dense: list[tf.Tensor], assigns) -> Compressed:
    """Concatenate the per-tensor parts and order the state update after them."""
    concat = lambda parts, dtype: tf.concat(parts, 0) if parts else tf.zeros([0], dtype)  # noqa: E731
    values, indices, dense = concat(values, tf.float32), concat(indices, tf.int32), concat(dense, tf.float32)
    if tf.executing_eagerly():
        for assign in assigns:
            assign()
        return Compressed(values, indices, dense, None)
    with tf.control_dependencies([values, indices, dense]):
        update = tf.group(*[assign() for assign in assigns])
    return Compressed(values, indices, dense, update)


def densify(values, indices, dense, shapes: Sequence[Shape], dense_mask: Sequence[bool]) -> tf.Tensor:
    """One flat float32 vector of the total size: the sparse entries scattered into zeros and the
    dense tensors put in place. Duplicate indices are summed, so several workers' values and
    indices may be concatenated first (with their dense parts summed) to get their sum at once.
    """
    if len(dense_mask) != len(shapes):
        raise ValueError(f"dense_mask has {len(dense_mask)} entries for {len(shapes)} tensors")
    sizes = sizes_of(shapes)
    spans = [(start, size) for start, size, is_dense in zip(offsets_of(sizes), sizes, dense_mask) if is_dense]
    dense_positions = np.concatenate([np.arange(a, a + n, dtype=np.int32) for a, n in spans] or [np.zeros([0], np.int32)])
    positions = tf.concat([tf.cast(tf.reshape(indices, [-1]), tf.int32), dense_positions], 0)
    entries = tf.concat([tf.cast(tf.reshape(values, [-1]), tf.float32), tf.cast(tf.reshape(dense, [-1]), tf.float32)], 0)
    return tf.scatter_nd(positions[:, None], entries, [sum(sizes)])
