"""Deep Gradient Compression (Lin et al., ICLR 2018), the worker's side.

Per step, for the gradients g of one worker:
1. Local gradient clipping (off when clip_norm is 0, as in the paper's reference code): all of the
   worker's tensors are scaled together so that their global L2 norm is at most
   clip_norm / sqrt(workers), the worker's share of the global threshold if all workers had
   gradients of the same distribution.
2. Momentum correction, for every tensor of more than one dimension: u <- m*u + g; v <- v + u;
   v is what is sparsified. The sent entries of u and v are then zeroed (momentum factor masking).
   The receiver applies plain SGD to the average of what the workers send: the momentum is in it.
3. Tensors of one dimension (biases) are not sparsified. The reference sends their raw gradient
   and applies ordinary momentum SGD to the average after communication; here the worker keeps
   their momentum instead, u <- m*u + g, and sends u whole, u left unmasked. Since momentum is
   linear, the average of the workers' u equals the momentum buffer of the averaged gradients
   (in synchronous training, every worker sending every step), so the receiver treats both parts
   alike: w <- w - lr * average(sent). These tensors have no v.
4. The threshold for each sparsified tensor comes from a strided sample of |v|: the smallest of
   its ceil(ratio * samples) largest magnitudes. With k = max(1, ceil(ratio * n)) the target count
   (ceil, as in the reference), while fewer than 0.8 k entries pass, the threshold is lowered by
   x0.8, at most 10 times (a tf.while_loop); if then more than 1.3 k pass, the exact top-k of the
   passing entries is sent instead. Between 0.8 k and 1.3 k, every passing entry is sent (the
   reference keeps the first k of them in index order; sending all of them keeps the sent set
   "the largest ones" and is counted in the bytes all the same).

The ratio is a float64 variable (float64 so that ceil(ratio * n) is the count Python computes: a
float32 0.001 times 100,000 is 100.0000047, whose ceil is 101). Set it per step or per epoch with
set_ratio, e.g. to warmup_ratio(epoch, final, warmup_epochs).
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from compression.common import Compressed, Shape, device_scope, finish, offsets_of, sizes_of, zero_at

UPPER_BOUND = 1.3  # more than this times k passing: take the exact top-k of those
LOWER_BOUND = 0.8  # fewer than this times k passing: lower the threshold by this factor
MAX_ADAPTATIONS = 10
PAPER_WARMUP = (0.25, 0.0625, 0.015625, 0.004)  # the paper's 75%, 93.75%, 98.4375%, 99.6% sparsity


def warmup_ratio(epoch: int, final: float, warmup_epochs: int) -> float:
    """The share of entries DGC sends in `epoch` (0-based): falling exponentially over the first
    `warmup_epochs`, then `final` for good.

    The paper's schedule for final 0.001 over 4 epochs is 0.25, 0.0625, 0.015625, 0.004, then
    0.001: the geometric sequence c^(e+1) with c = 0.001^(1/5) = 0.2512, rounded. That schedule is
    returned as published; any other (final, warmup_epochs) gets that geometric sequence unrounded.
    """
    if epoch < 0 or warmup_epochs < 0:
        raise ValueError(f"epoch and warmup_epochs must be at least 0, got {epoch} and {warmup_epochs}")
    if not 0.0 < final <= 1.0:
        raise ValueError(f"the final ratio must be in (0, 1], got {final}")
    if epoch >= warmup_epochs:
        return final
    if final == 0.001 and warmup_epochs == len(PAPER_WARMUP):
        return PAPER_WARMUP[epoch]
    return final ** ((epoch + 1) / (warmup_epochs + 1))


class DGC:
    def __init__(
        self,
        shapes: Sequence[Shape],
        momentum: float = 0.9,
        clip_norm: float = 0.0,
        workers: int = 1,
        sample_fraction: float = 0.01,
        device: str | None = None,
        ratio: float = 0.001,
        seed: int = 0,
        step: tf.Tensor | None = None,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if clip_norm < 0.0:
            raise ValueError(f"clip_norm must be at least 0 (0 turns clipping off), got {clip_norm}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if not 0.0 < sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
        _check_ratio(ratio)
        self.shapes = [tuple(int(d) for d in shape) for shape in shapes]
        self.sizes = sizes_of(self.shapes)
        self.offsets = offsets_of(self.sizes)
        self.dense_mask = [len(shape) <= 1 for shape in self.shapes]
        self.momentum, self.clip_norm, self.workers = momentum, clip_norm, workers
        self.sample_fraction = sample_fraction
        self.device = device
        # The threshold sample's offset is a function of (seed, tensor, step): runs repeat bit for bit,
        # a resumed run included. Without a step tensor (eager use) a per-compressor counter stands in.
        self.seed, self.step = seed, step
        self._calls = 0
        with device_scope(device):
            self.ratio = tf.Variable(ratio, dtype=tf.float64, trainable=False, name="dgc_ratio")
            self.momenta = [tf.Variable(tf.zeros(s), trainable=False, name=f"dgc_momentum_{i}") for i, s in enumerate(self.shapes)]
            self.velocities = [
                None if dense else tf.Variable(tf.zeros(s), trainable=False, name=f"dgc_velocity_{i}")
                for i, (s, dense) in enumerate(zip(self.shapes, self.dense_mask))
            ]
            self._ratio_assign = None
            if not tf.executing_eagerly():  # built once, so set_ratio adds nothing to the graph
                self._ratio_feed = tf.compat.v1.placeholder(tf.float64, [], name="dgc_ratio_feed")
                self._ratio_assign = self.ratio.assign(self._ratio_feed)
        # The state to checkpoint: per tensor its u, then its v if it is sparsified.
        self.variables: list[tf.Variable] = [
            var for pair in zip(self.momenta, self.velocities) for var in pair if var is not None
        ]

    def set_ratio(self, value: float, session: tf.compat.v1.Session | None = None) -> None:
        """Set the share of entries sent from the next compress on (graph mode needs the session)."""
        _check_ratio(value)
        if self._ratio_assign is None:
            self.ratio.assign(value)
        elif session is None:
            raise ValueError("DGC.set_ratio: this DGC was built in a graph; pass the session to run it in")
        else:
            session.run(self._ratio_assign, {self._ratio_feed: value})

    def clip(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The gradients scaled together to a global norm of at most clip_norm / sqrt(workers)."""
        grads = [tf.cast(g, tf.float32) for g in grads]
        if self.clip_norm <= 0.0:
            return grads
        clipped, _ = tf.clip_by_global_norm(grads, self.clip_norm / math.sqrt(self.workers))
        return clipped

    def compress(self, grads: Sequence[tf.Tensor]) -> Compressed:
        if len(grads) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} gradients, got {len(grads)}")
        values, indices, dense, assigns = [], [], [], []
        with device_scope(self.device):
            for grad, u, v, offset in zip(self.clip(grads), self.momenta, self.velocities, self.offsets):
                new_u = self.momentum * u.read_value() + grad
                if v is None:
                    dense.append(tf.reshape(new_u, [-1]))
                    assigns.append(lambda u=u, new_u=new_u: u.assign(new_u))
                    continue
                new_v = tf.reshape(v.read_value() + new_u, [-1])
                picked = select(new_v, self.ratio, self.sample_fraction, self._sample_seed(len(indices)))
                values.append(tf.gather(new_v, picked))
                indices.append(picked + offset)
                u_left = tf.reshape(zero_at(tf.reshape(new_u, [-1]), picked), u.shape)
                v_left = tf.reshape(zero_at(new_v, picked), v.shape)
                assigns.append(lambda u=u, u_left=u_left: u.assign(u_left))
                assigns.append(lambda v=v, v_left=v_left: v.assign(v_left))
            self._calls += 1
            return finish(values, indices, dense, assigns)

    def _sample_seed(self, tensor: int) -> tf.Tensor:
        step = self._calls if self.step is None else self.step
        return tf.stack([tf.constant(self.seed * 1_000_003 + tensor, tf.int64), tf.cast(step, tf.int64)])


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the DGC ratio must be in (0, 1], got {ratio}")


def select(flat: tf.Tensor, ratio: tf.Tensor, sample_fraction: float, seed: tf.Tensor) -> tf.Tensor:
    """Positions (int32) of the entries of `flat` that DGC sends, by a sampled threshold.

    `seed` ([2] int64) fixes the sample's offset (a stateless draw)."""
    size = int(flat.shape[0])
    ratio = tf.cast(ratio, tf.float64)
    magnitude = tf.abs(flat)
    target = tf.clip_by_value(tf.cast(tf.math.ceil(ratio * size), tf.int32), 1, size)  # k

    samples = _strided_sample(magnitude, ratio, sample_fraction, seed)
    sample_top = tf.maximum(1, tf.cast(tf.math.ceil(ratio * tf.cast(tf.size(samples), tf.float64)), tf.int32))
    threshold = tf.reduce_min(tf.math.top_k(samples, sample_top, sorted=False).values)

    passing = lambda t: tf.reduce_sum(tf.cast(magnitude >= t, tf.int32))  # noqa: E731
    too_few = lambda count: tf.cast(count, tf.float64) < LOWER_BOUND * tf.cast(target, tf.float64)  # noqa: E731
    _, threshold, count = tf.while_loop(
        lambda i, t, count: tf.logical_and(i < MAX_ADAPTATIONS, too_few(count)),
        lambda i, t, count: (i + 1, t * LOWER_BOUND, passing(t * LOWER_BOUND)),
        (tf.constant(0), threshold, passing(threshold)),
    )
    chosen = tf.cast(tf.reshape(tf.where(magnitude >= threshold), [-1]), tf.int32)

    def exact_top_of_chosen():
        _, best = tf.math.top_k(tf.gather(magnitude, chosen), target, sorted=False)
        return tf.gather(chosen, best)

    too_many = tf.cast(count, tf.float64) > UPPER_BOUND * tf.cast(target, tf.float64)
    return tf.cond(too_many, exact_top_of_chosen, lambda: chosen)


def _strided_sample(magnitude: tf.Tensor, ratio: tf.Tensor, sample_fraction: float, seed: tf.Tensor) -> tf.Tensor:
    """About max(sample_fraction * n, 2 / ratio) entries at a fixed stride from a seeded random start;
    all of them when that is the whole tensor. The stride is odd so that it never lines up with
    the power-of-two channel counts of conv kernels (always sampling the same channel)."""
    size = int(magnitude.shape[0])
    wanted = tf.maximum(
        tf.cast(math.ceil(size * sample_fraction), tf.float64), tf.math.ceil(2.0 / ratio)
    )
    stride = tf.cast(tf.maximum(tf.constant(1.0, tf.float64), tf.math.floor(size / wanted)), tf.int32)
    stride = stride - 1 + stride % 2  # odd, and no larger, so at least `wanted` samples remain
    start = tf.random.stateless_uniform([], seed, minval=0, maxval=stride, dtype=tf.int32)
    return tf.strided_slice(magnitude, [start], [size], [stride])
