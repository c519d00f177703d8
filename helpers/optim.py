"""The project's one Adam: the update every optimizer of the project applies, and the learning-rate schedule.

One update, TensorFlow's fused kernel (`ResourceApplyAdam`) with t counted by the optimizer:

    m ← m + (1 − β1)(g − m)      v ← v + (1 − β2)(g² − v)
    x ← x − lr · √(1 − β2^t) / (1 − β1^t) · m / (√v + ε)

with β1 = 0.9, β2 = 0.999, β^t computed from the step count t (not accumulated by multiplication, as
`tf.compat.v1.train.AdamOptimizer`'s beta powers were), and ε by what is trained:
    MODEL_EPSILON      1e-8  the trained model's (the reference's optimizer, TensorFlow 1's default): the
                             workers' local Adam, sync's PS Adam and the flat optimizer, which must take the
                             same step
    PREDICTOR_EPSILON  1e-7  the predictor's and the WNN's nowcasters' (Keras' default). ε only matters
                             where √v is that small, for weights whose gradients are near zero, and the
                             predictor has such weights: at 1e-8 its training on the stage's test data
                             (tests/test_train_stage.py) reached 0.97 assembled accuracy after one epoch
                             and fell to chance in the next, where 1e-7 keeps learning.

Two forms of it:
    Adam           over named variables, eagerly, in a tf.function or in a TensorFlow 1 graph: the workers'
                   local Adam (runtime/methods/base.py: WorkerSide.adam), sync's PS Adam, the predictor's
                   training, online MP²'s rounds, the WNN, the benchmarks; its state (m, v, t) is variables
                   the caller may make (so a worker or the PS saves them with the run) and, for the eager
                   users, plain arrays for --resume; an optional linear warm-up of the rate
    FlatOptimizer  over one flat parameter vector, for methods whose worker and PS apply the same step to
                   their copies of the model (Top-k, DGC, PowerSGD, MP²'s correction): both run this kernel
                   on the same values with t from the global step, so the copies agree bit for bit and no
                   model needs to be sent
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

BETA1, BETA2 = 0.9, 0.999
MODEL_EPSILON, PREDICTOR_EPSILON = 1e-8, 1e-7
DECAY_STEPS, DECAY_RATE = 50, 0.999  # the reference's staircase decay of the workers' rate


def learning_rate(lr: float, step: tf.Tensor) -> tf.Tensor:
    """The reference's schedule: lr · 0.999^floor(step / 50)."""
    return tf.compat.v1.train.exponential_decay(lr, step, DECAY_STEPS, DECAY_RATE, staircase=True)


def apply_adam(var: tf.Variable, m: tf.Variable, v: tf.Variable, grad: tf.Tensor, lr: tf.Tensor,
               t: tf.Tensor, epsilon: float) -> tf.Operation:
    """The update of step `t` (1 for the first) on `var` and its moments `m`, `v`, in place."""
    t = tf.cast(t, tf.float32)
    return tf.raw_ops.ResourceApplyAdam(
        var=var.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(BETA1, t), beta2_power=tf.pow(BETA2, t),
        lr=tf.cast(lr, tf.float32), beta1=tf.constant(BETA1), beta2=tf.constant(BETA2),
        epsilon=tf.constant(epsilon, tf.float32), grad=grad, use_locking=False)


def _plain_variable(name: str, value: tf.Tensor) -> tf.Variable:
    return tf.Variable(value, trainable=False)  # unnamed: a caller's names need not be valid op names


class Adam:
    """Adam over a dict of tf.Variables (ε: the predictor's by default).

    `apply(grads)` takes one step: it advances the step count t by one and updates every variable with
    β^t of the new t. In a TensorFlow 1 graph it returns the op that does so; each op built by `apply`
    is one step of this optimizer's clock when it runs, so a graph may hold several (one per phase) as
    long as a session run runs at most one of them.

    `make(name, initial value) -> tf.Variable` makes the state variables (t, then m and v per variable):
    a worker's or the PS's graph passes its own, which places them and saves them with the run. A
    variable not named at construction gets its moments on the first `apply` that trains it, so one
    optimizer (one clock) may train different subsets in different phases.

    With `warmup_steps` W the rate rises linearly over the first W steps (lr · min(1, t / W)): Adam's
    first steps move every weight by about the rate whatever its gradient, which undoes much of a
    predictor given as a starting point before its moments know the gradients' scale.
    """

    def __init__(self, variables: Mapping[str, tf.Variable] | None = None, lr: float | tf.Tensor = 1e-3,
                 warmup_steps: int = 0, epsilon: float = PREDICTOR_EPSILON,
                 make: Callable[[str, tf.Tensor], tf.Variable] = _plain_variable) -> None:
        self.lr, self.warmup_steps, self.epsilon, self._make = lr, warmup_steps, epsilon, make
        self.names: list[str] = []
        self.vars: list[tf.Variable] = []
        self.m: list[tf.Variable] = []
        self.v: list[tf.Variable] = []
        self._slot: dict = {}  # var.ref() -> its index in the lists above
        self.t = make("t", tf.constant(0, tf.int64))
        for name, var in (variables or {}).items():
            self._add(name, var)

    def _add(self, name: str, var: tf.Variable) -> int:
        if var.ref() not in self._slot:
            zeros = tf.zeros(var.shape, var.dtype)  # not zeros_like: no read of the variable in the initializer
            self._slot[var.ref()] = len(self.vars)
            self.names.append(name)
            self.vars.append(var)
            self.m.append(self._make(f"m/{name}", zeros))
            self.v.append(self._make(f"v/{name}", zeros))
        return self._slot[var.ref()]

    def first_moment(self, var: tf.Variable) -> tf.Variable | None:
        """The first moment of `var` (None: this optimizer has not trained it)."""
        k = self._slot.get(var.ref())
        return None if k is None else self.m[k]

    def apply(self, grads: list, variables: list[tf.Variable] | None = None) -> tf.Operation | None:
        """One step; `grads` in the order of `variables` (default: those named at construction; None as a
        gradient leaves that variable alone). Eagerly or in a tf.function it is done on return (None);
        in a TensorFlow 1 graph the returned op does it."""
        if variables is None:
            variables = self.vars
        if len(grads) != len(variables):
            raise ValueError(f"Adam.apply: {len(grads)} gradients for {len(variables)} variables")
        slots = [self._add(var.name.split(":")[0], var) for var in variables]
        # The new t, read after its increment: every update below uses it.
        t = tf.convert_to_tensor(self.t.assign_add(1))
        lr = tf.cast(self.lr, tf.float32)  # a float, or a tensor whose value may change between steps
        if self.warmup_steps:
            lr = lr * tf.minimum(1.0, tf.cast(t, tf.float32) / float(self.warmup_steps))
        updates = [apply_adam(var, self.m[k], self.v[k], g, lr, t, self.epsilon)
                   for var, g, k in zip(variables, grads, slots) if g is not None]
        return tf.group(*updates)

    # --- state for --resume (eager users; a graph's owner saves the variables themselves) ------
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


class FlatOptimizer:
    """`apply(model, gradient, lr, step)` -> the new flat model (ε: the model's).

    Adam's moments are variables made by `state` (saved with the run). The model is a flat vector (a
    tensor: a worker's is the concatenation of its layers) and the kernel updates a variable in place,
    so the step runs on a copy in a variable made by `scratch` (live within a step, not saved).
    """

    kinds = ("adam", "sgd")

    def __init__(self, kind: str, size: int, state: Callable[[str, tf.Tensor], tf.Variable],
                 scratch: Callable[[str, tf.Tensor], tf.Variable]) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(self.kinds)}")
        self.kind = kind
        if kind == "adam":
            self.m = state("adam_m", tf.zeros([size]))
            self.v = state("adam_v", tf.zeros([size]))
            self.x = scratch("adam_x", tf.zeros([size]))

    def apply(self, model: tf.Tensor, gradient: tf.Tensor, lr: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, list[tf.Operation]]:
        """The updated model and the slot updates (run them together); `step` counts from 0."""
        if self.kind == "sgd":
            return model - lr * gradient, []
        with tf.control_dependencies([self.x.assign(model)]):
            update = apply_adam(self.x, self.m, self.v, gradient, lr, step + 1, MODEL_EPSILON)
        with tf.control_dependencies([update]):
            return self.x.read_value(), [update]
