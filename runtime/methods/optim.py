"""Optimizer updates that a worker and the PS compute identically, so their models stay equal.

Where the reply is a sparse aggregate (Top-k, DGC) every worker applies the same update to its
copy that the PS applies to the global model. Both run these same ops on the same flat vectors,
so the results agree bit for bit: no drift, and no model needs to be sent.
"""
from __future__ import annotations

import tensorflow as tf

BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8
DECAY_STEPS, DECAY_RATE = 50, 0.999  # the reference's staircase decay


def learning_rate(lr: float, step: tf.Tensor) -> tf.Tensor:
    """The reference's schedule: lr · 0.999^floor(step / 50)."""
    return tf.compat.v1.train.exponential_decay(lr, step, DECAY_STEPS, DECAY_RATE, staircase=True)


class FlatOptimizer:
    """`apply(model, gradient, lr, step)` -> the new flat model; slots are flat variables of `state`."""

    kinds = ("adam", "sgd")

    def __init__(self, kind: str, size: int, make_variable) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(self.kinds)}")
        self.kind = kind
        if kind == "adam":
            self.m = make_variable("adam_m", tf.zeros([size]))
            self.v = make_variable("adam_v", tf.zeros([size]))

    def apply(self, model: tf.Tensor, gradient: tf.Tensor, lr: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, list[tf.Operation]]:
        """The updated model and the slot updates (run them together)."""
        if self.kind == "sgd":
            return model - lr * gradient, []
        m = BETA1 * self.m + (1.0 - BETA1) * gradient
        v = BETA2 * self.v + (1.0 - BETA2) * tf.square(gradient)
        t = tf.cast(step + 1, tf.float32)
        rate = lr * tf.sqrt(1.0 - tf.pow(BETA2, t)) / (1.0 - tf.pow(BETA1, t))
        return model - rate * m / (tf.sqrt(v) + EPSILON), [self.m.assign(m), self.v.assign(v)]
