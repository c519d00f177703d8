"""PowerSGD (Vogels, Karimireddy and Jaggi, NeurIPS 2019): rank-R gradients by one warm-started step
of power iteration, with error feedback, as the paper's reference code does it (epfml/powersgd,
paper-code/gradient_reducers.py, `RankKReducer` with `reuse_query=True`).

Per tensor of two or more dimensions, seen as a matrix M (n × m), at rank r = min(n, m, R):

    worker  M = gradient + residual;  P = M·Q                        exchange 1: P (and 1-D tensors, dense)
    PS      P̂ = Gram–Schmidt(mean of the workers' P)                 reply 1: P̂ (and the 1-D means)
    worker  Q = Mᵀ·P̂                                                 exchange 2: Q
    PS      Q̄ = mean of the workers' Q                               reply 2: Q̄
    both    gradient = P̂·Q̄ᵀ;  worker: residual = M − P̂·Q̄ᵀ,  Q ← Q̄ (the warm start of the next step)

The residual subtracts the *averaged* reconstruction, as the reference does (`mem = tensor - out`,
out built from the all-reduced Q). The reference sums P before orthonormalising; the mean differs
only by a scale that Gram–Schmidt removes. Q starts as a seeded standard normal draw, the same on
every worker; 1-D tensors (biases) travel uncompressed and keep no residual.

**Matrix view.** The reference (PyTorch: dense [out, in], conv OIHW) views a tensor as
[out, in·kh·kw]: n counts output features. Our layouts put output features last (dense [in, out],
conv HWIO), so n = shape[-1], m = the product of the other dimensions, and we hold the transpose
Mᵀ = reshape(tensor, [m, n]): its rows are the reference's columns in another order, which only
permutes the rows of Q. P = M·Q and Q = Mᵀ·P̂ are computed from Mᵀ directly, and the
reconstruction comes out as Mᵀ's shape, so no transpose is ever taken.

**Bit for bit on every process.** `decompress` is the one computation that the PS and every worker
must get identical (each applies the same optimizer step to it): it is built from element-wise
products summed over the r ranks in a fixed order, never a matmul, whose summation order may
depend on threads. Everything else is either the PS's alone (Gram–Schmidt, means) or a worker's
alone (M·Q, Mᵀ·P̂).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from compression.common import Shape, device_scope

EPSILON = 1e-8  # Gram–Schmidt's guard against a zero column, the reference's
SEED_TAG = 0x50534744  # "PSGD": keeps the draws of Q apart from any other use of the run's seed


@dataclass(frozen=True)
class Matrix:
    """A compressed tensor: its index in the layout, its matrix view n × m and its rank."""

    index: int
    n: int
    m: int
    rank: int


class Plan:
    """What the layout's shapes fix: which tensors are matrices, their ranks, the payloads' layout.

    The first exchange's vector is [P of every matrix (n × r, row-major), in layout order; then every
    1-D tensor]; the second's is [Q of every matrix (m × r)]. Stateless: the PS needs nothing else.
    """

    def __init__(self, shapes: Sequence[Shape], rank: int) -> None:
        if rank < 1:
            raise ValueError(f"the PowerSGD rank must be at least 1, got {rank}")
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.matrices = [Matrix(i, s[-1], math.prod(s[:-1]), min(s[-1], math.prod(s[:-1]), rank))
                         for i, s in enumerate(self.shapes) if len(s) >= 2]
        self.vectors = [i for i, s in enumerate(self.shapes) if len(s) < 2]
        self.p_size = sum(x.n * x.rank for x in self.matrices)
        self.q_size = sum(x.m * x.rank for x in self.matrices)
        self.dense_size = sum(math.prod(self.shapes[i]) for i in self.vectors)
        self.first_size = self.p_size + self.dense_size

    def split_first(self, first: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]:
        """The first exchange's vector as [n, r] matrices and the flat 1-D part."""
        parts = tf.split(first, [x.n * x.rank for x in self.matrices] + [self.dense_size])
        return [tf.reshape(p, [x.n, x.rank]) for p, x in zip(parts, self.matrices)], parts[-1]

    def split_second(self, second: tf.Tensor) -> list[tf.Tensor]:
        if not self.matrices:  # 1-D tensors only (a piece of the model over several PS tasks may hold no matrix)
            return []
        return [tf.reshape(q, [x.m, x.rank]) for q, x in zip(tf.split(second, [x.m * x.rank for x in self.matrices]), self.matrices)]

    def orthonormalise(self, first: tf.Tensor) -> tf.Tensor:
        """The first exchange's vector with every P replaced by its Gram–Schmidt orthonormalisation."""
        ps, dense = self.split_first(first)
        return tf.concat([tf.reshape(gram_schmidt(p), [-1]) for p in ps] + [dense], 0)

    def decompress(self, first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
        """The flat gradient in layout order: P̂·Q̄ᵀ per matrix (in the layout's shape), 1-D tensors as sent."""
        ps, dense = self.split_first(first)
        pieces: list[tf.Tensor | None] = [None] * len(self.shapes)
        for x, p, q in zip(self.matrices, ps, self.split_second(second)):
            pieces[x.index] = tf.reshape(reconstruct(p, q), [-1])
        for i, part in zip(self.vectors, tf.split(dense, [math.prod(self.shapes[i]) for i in self.vectors] or [0])):
            pieces[i] = part
        return tf.concat(pieces, 0)


def gram_schmidt(p: tf.Tensor) -> tf.Tensor:
    """Orthonormal columns, column by column (modified Gram–Schmidt, as the reference)."""
    columns = tf.unstack(p, axis=1)
    for i in range(len(columns)):
        columns[i] = columns[i] / (tf.sqrt(tf.reduce_sum(tf.square(columns[i]))) + EPSILON)
        for j in range(i + 1, len(columns)):
            columns[j] = columns[j] - tf.reduce_sum(columns[i] * columns[j]) * columns[i]
    return tf.stack(columns, axis=1)


def reconstruct(p: tf.Tensor, q: tf.Tensor) -> tf.Tensor:
    """(P·Qᵀ)ᵀ = Q·Pᵀ, [m, n], as a sum of r outer products in rank order (element-wise: exact everywhere)."""
    out = q[:, 0:1] * p[None, :, 0]
    for j in range(1, p.shape[1]):
        out = out + q[:, j : j + 1] * p[None, :, j]
    return out


def initial_queries(plan: Plan, seed: int) -> list[np.ndarray]:
    """Q before the first step: a standard normal draw per matrix, the same on every worker."""
    return [np.random.default_rng([seed, SEED_TAG, x.index]).standard_normal((x.m, x.rank)).astype(np.float32)
            for x in plan.matrices]


class PowerSGD:
    """A worker's compressor: its residuals and warm-started Qs (state), and the first reply (scratch).

    `first_payload(grads)` (run 1), `second_payload(reply)` (run 2), `finish(reply)` (run 3): each in a
    session run of its own, in that order, every step. Between them the residual variables hold M.
    """

    def __init__(self, shapes: Sequence[Shape], rank: int, seed: int, device: str | None = None) -> None:
        self.plan = Plan(shapes, rank)
        with device_scope(device):
            self.residuals = [tf.Variable(tf.zeros([x.m, x.n]), trainable=False, name=f"powersgd_residual_{x.index}")
                              for x in self.plan.matrices]
            self.queries = [tf.Variable(q, trainable=False, name=f"powersgd_q_{x.index}")
                            for q, x in zip(initial_queries(self.plan, seed), self.plan.matrices)]
            self.first = tf.Variable(tf.zeros([self.plan.first_size]), trainable=False, name="powersgd_first_reply")
        self.variables: list[tf.Variable] = [*self.residuals, *self.queries]  # saved with the run
        self.scratch: list[tf.Variable] = [self.first]                       # lives within a step

    def first_payload(self, grads: Sequence[tf.Tensor]) -> tf.Tensor:
        """P = M·Q of every matrix and the 1-D gradients; the residuals take M = gradient + residual."""
        if len(grads) != len(self.plan.shapes):
            raise ValueError(f"expected {len(self.plan.shapes)} gradients, got {len(grads)}")
        ms, ps = [], []
        for x, residual, q in zip(self.plan.matrices, self.residuals, self.queries):
            m = tf.reshape(tf.cast(grads[x.index], tf.float32), [x.m, x.n]) + residual.read_value()
            ms.append(m)
            ps.append(tf.reshape(tf.matmul(m, q.read_value(), transpose_a=True), [-1]))  # (Mᵀ)ᵀ·Q: [n, r]
        dense = [tf.reshape(tf.cast(grads[i], tf.float32), [-1]) for i in self.plan.vectors]
        payload = tf.concat(ps + dense, 0)
        with tf.control_dependencies([payload]):
            keep = tf.group(*[r.assign(m) for r, m in zip(self.residuals, ms)])
        with tf.control_dependencies([keep]):
            return tf.identity(payload)

    def second_payload(self, first_reply: tf.Tensor) -> tf.Tensor:
        """Q = Mᵀ·P̂ of every matrix; the first reply is kept for `finish`."""
        p_hats, _ = self.plan.split_first(first_reply)
        qs = [tf.reshape(tf.matmul(r.read_value(), p), [-1]) for r, p in zip(self.residuals, p_hats)]
        payload = tf.concat(qs, 0)
        with tf.control_dependencies([self.first.assign(first_reply)]):
            return tf.identity(payload)

    def finish(self, second_reply: tf.Tensor) -> tuple[tf.Tensor, tf.Operation]:
        """The averaged gradient (`Plan.decompress`) and the op that sets residual = M − P̂·Q̄ᵀ and Q ← Q̄."""
        first = self.first.read_value()
        p_hats, _ = self.plan.split_first(first)
        q_bars = self.plan.split_second(second_reply)
        gradient = self.plan.decompress(first, second_reply)
        with tf.control_dependencies([gradient]):
            update = tf.group(*[r.assign(r.read_value() - reconstruct(p, q)) for r, p, q in zip(self.residuals, p_hats, q_bars)],
                              *[v.assign(q) for v, q in zip(self.queries, q_bars)])
        return gradient, update
