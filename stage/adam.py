"""Adam over a dict of tf.Variables, written out so its state is plain arrays (saved without pickle).

Same update as Keras' Adam: m and v are exponential moving averages of the gradient and its square;
the step is lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon). With `warmup_steps` W the
learning rate rises linearly over the first W steps (lr * min(1, t / W)): Adam's first steps move every
weight by about the learning rate whatever its gradient, which undoes much of a predictor given as a
starting point before its moments know the gradients' scale.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf


class Adam:
    def __init__(self, variables: Mapping[str, tf.Variable], lr: float | tf.Variable = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-7, warmup_steps: int = 0) -> None:
        self.names = list(variables)
        self.vars = [variables[n] for n in self.names]
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.warmup_steps = warmup_steps
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.vars]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.vars]
        self.t = tf.Variable(0, dtype=tf.int64, trainable=False)

    def apply(self, grads: list) -> None:
        """One update; `grads` in the order of the variables (None: that variable is left alone).

        Runs eagerly or inside a tf.function.
        """
        self.t.assign_add(1)
        t = tf.cast(self.t, tf.float32)
        beta1_power, beta2_power = self.beta1 ** t, self.beta2 ** t
        lr = tf.cast(self.lr, tf.float32)  # a float, or a variable whose value may change between steps
        if self.warmup_steps:
            lr = lr * tf.minimum(1.0, t / float(self.warmup_steps))
        for var, g, m, v in zip(self.vars, grads, self.m, self.v):
            if g is None:
                continue
            # TensorFlow's fused kernel for exactly this update (one pass instead of ten ops).
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle, beta1_power=beta1_power, beta2_power=beta2_power,
                lr=lr, beta1=tf.constant(self.beta1, tf.float32),
                beta2=tf.constant(self.beta2, tf.float32), epsilon=tf.constant(self.epsilon, tf.float32),
                grad=g, use_locking=False,
            )

    # --- state for --resume ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        out = {"adam/t": np.array(self.t.numpy(), np.int64)}
        for name, m, v in zip(self.names, self.m, self.v):
            out[f"adam/m/{name}"] = m.numpy()
            out[f"adam/v/{name}"] = v.numpy()
        return out

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what `state` returned; raises ValueError naming a missing or misshapen entry."""
        for name, m, v in zip(self.names, self.m, self.v):
            for key, var in ((f"adam/m/{name}", m), (f"adam/v/{name}", v)):
                if key not in arrays:
                    raise ValueError(f"the optimizer state lacks {key}")
                if tuple(arrays[key].shape) != tuple(var.shape):
                    raise ValueError(f"the optimizer state {key} has shape {arrays[key].shape}, "
                                     f"expected {tuple(var.shape)}")
                var.assign(arrays[key])
        if "adam/t" not in arrays:
            raise ValueError("the optimizer state lacks adam/t")
        self.t.assign(int(arrays["adam/t"]))
