"""MP²'s correction: what the prediction misses, learned from the workers' own gradients.

Without it the predicted layers learn only from the predictor: every partial step replaces what the
workers' training did to them, so online MP² learns them only in the PS's rounds, at a small fraction
of the image draws the workers spend on them. With `--correction-ratio r` (> 0) every worker also
sends, on partial steps, Top-k with error feedback (compression/topk.py: the r·n largest entries of
each predicted tensor's gradient plus what it left unsent) of its gradient of the predicted group.
The PS averages them and takes an Adam step on a correction vector (the workers' rate and schedule;
its own step count for the bias correction), which every prediction gets added:

    predicted group = predictor(mean of the pushed groups) + correction      (the control, --prediction
    hold: the held group moves by the correction's step instead)

The correction, its Adam moments and the workers' residuals are state, saved with the run. Online
MP² judges every predictor with the correction added, as it would run.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from compression.common import Compressed
from helpers.optim import FlatOptimizer, learning_rate
from runtime.methods.base import PSSide, WorkerSide, mean


def compress_gradient(w: WorkerSide, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor],
                      ratio: float) -> Compressed:
    """The worker's payload: Top-k with error feedback of `grads` (of `variables`, the predicted group
    in layout order); its residuals become worker state."""
    from compression import TopK

    compressor = TopK([tuple(v.shape) for v in variables], ratio, device=w.device)
    w.state += list(compressor.variables)
    return compressor.compress(grads)


class Correction:
    """The PS's correction of the predicted group, trained on the workers' sparse gradients."""

    def __init__(self, ps: PSSide, lr: float) -> None:
        self.layout, self.size, self.lr, self.step = ps.layout, ps.layout.predicted, lr, ps.step
        self.vector = ps.variable("correction", tf.zeros([self.size]))
        self.steps = ps.variable("correction_steps", tf.constant(0, tf.int64), tf.int64)  # Adam's t - 1
        with tf.device(ps.device):
            self.optimizer = FlatOptimizer("adam", self.size, ps.variable, ps.scratch)

    def update(self, payloads: list[list[tf.Tensor]]) -> tuple[tf.Tensor, tf.Tensor]:
        """One Adam step on the mean of the workers' sparse gradients (payload items 1 and 2: values and
        positions in the predicted group): the correction (before, after), the step applied once `after` runs."""
        gradient = mean([tf.scatter_nd(tf.expand_dims(p[2], 1), p[1], [self.size]) for p in payloads])
        before = self.vector.read_value()
        after, slots = self.optimizer.apply(before, gradient, learning_rate(self.lr, self.step), self.steps)
        with tf.control_dependencies([self.vector.assign(after), *slots]):
            counted = self.steps.assign_add(1)
        with tf.control_dependencies([counted]):
            return before, tf.identity(after)

    def added(self, full: tf.Tensor, correction: tf.Tensor | None = None) -> tf.Tensor:
        """`full` (a flat model) with the correction (by default its current value) added to its predicted group."""
        pushed, predicted = self.layout.split(full)
        return self.layout.join(pushed, predicted + (self.vector.read_value() if correction is None else correction))
