"""Gradient sparsification: Top-k with error feedback, and Deep Gradient Compression (DGC).

Workers send sparse gradients (float32 values + int32 positions in the flat model); the PS averages
them into one sparse gradient, applies the optimizer to the global model, and sends back that
sparse average — not the model. Every worker then applies the same optimizer step to its own copy
(helpers/optim.py computes it identically on both sides), so all models stay equal while the
reply stays sparse: at most N·k entries instead of the whole model.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from helpers import argtypes
from helpers.optim import FlatOptimizer, learning_rate
from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, mean, spans, tensors_of
from runtime.methods.options import Options, option


class _Sparse(Method):
    up_dtypes = (tf.float32, tf.int32, tf.float32)   # values, indices, dense tensors (DGC's biases)
    down_dtypes = (tf.float32, tf.int32)             # the averaged gradient's non-zero values, positions
    optimizer = "adam"
    shardable = True  # per tensor on the worker, element-wise on the PS

    def shapes(self) -> list[tuple[int, ...]]:
        return [p.shape for p in self.layout.params]

    def compressor(self, w: WorkerSide):
        raise NotImplementedError

    def dense_mask(self) -> list[bool]:
        return [False] * len(self.layout.params)

    # --- worker ---------------------------------------------------------------------------------
    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        compressor = self.compressor(w)
        w.state += list(compressor.variables)
        sent = compressor.compress(w.gradients())
        with tf.device(w.device):
            optimizer = FlatOptimizer(self.optimizer, self.layout.total, w.variable, w.scratch)

        def apply(reply: list[tf.Tensor]) -> tf.Operation:
            gradient = _scatter(reply[0], reply[1], self.layout.total)
            new, slots = optimizer.apply(w.local.vector(), gradient, learning_rate(self.run.lr, w.step), w.step)
            return tf.group(w.local.assign(new), *slots)

        with tf.control_dependencies([sent.update]):
            up = [tf.identity(sent.values), tf.identity(sent.indices), tf.identity(sent.dense)]
        return {0: WorkerPhase(up=up, apply=apply)}

    # --- PS -------------------------------------------------------------------------------------
    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        from compression import densify

        payloads = ps.gather()
        average = mean([densify(v, i, d, self.shapes(), self.dense_mask()) for v, i, d in payloads])
        # Positions where the average is zero need not travel: both sides treat them as zero.
        positions = tf.cast(tf.where(tf.not_equal(average, 0.0))[:, 0], tf.int32)
        values = tf.gather(average, positions)
        with tf.device(ps.device):
            optimizer = FlatOptimizer(self.optimizer, self.layout.total, ps.variable, ps.scratch)
        new, slots = optimizer.apply(ps.model, average, learning_rate(self.run.lr, ps.step), ps.step)
        with tf.control_dependencies([ps.model.assign(new), *slots]):
            return {0: PSPhase(reply=[tf.identity(values), tf.identity(positions)])}


    # --- pieces of the model ----------------------------------------------------------------------------
    def split(self, payload: list[tf.Tensor], parts: list, phase: int, exchange: int) -> list[list[tf.Tensor]]:
        """Each piece's entries, positions counted from the piece's start, and its dense tensors. A worker's
        entries come tensor by tensor in layout order, so a piece's are the run of them whose positions fall in
        its slice of the model: the entries before it are those at positions below its start."""
        values, indices, dense = payload
        dense_sizes = [p.size if d else 0 for p, d in zip(self.layout.params, self.dense_mask())]
        out = []
        for part in parts:
            first, last = [tf.reduce_sum(tf.cast(indices < at, tf.int32)) for at in (part.start, part.end)]
            d0, d1 = spans(dense_sizes, tensors_of(self.layout, part))
            out.append([values[first:last], indices[first:last] - part.start, dense[d0:d1]])
        return out

    def join(self, replies: list[list[tf.Tensor]], parts: list, phase: int, exchange: int) -> list[tf.Tensor]:
        # Each piece's non-zero positions in increasing order, its pieces in order: the whole model's, in order.
        return [tf.concat([r[0] for r in replies], 0),
                tf.concat([r[1] + part.start for r, part in zip(replies, parts)], 0)]


def _scatter(values: tf.Tensor, positions: tf.Tensor, size: int) -> tf.Tensor:
    return tf.scatter_nd(tf.expand_dims(positions, 1), values, [size])


@dataclass(frozen=True)
class TopKOptions(Options):
    ratio: float = option(0.01, "fraction of each tensor's entries sent", argtypes.open_fraction)


@dataclass(frozen=True)
class DGCOptions(Options):
    ratio: float = option(0.001, "final fraction of each tensor's entries sent", argtypes.open_fraction)
    momentum: float = option(0.9, "momentum of the momentum correction", argtypes.float_in(0.0, 1.0, high_open=True))
    clip_norm: float = option(0.0, "local gradient clipping threshold (0: off)", argtypes.nonnegative_float)
    warmup_epochs: int = option(4, "epochs over which the sent fraction falls to --ratio", argtypes.nonnegative_int)


class TopK(_Sparse):
    name = "topk"
    summary = "per tensor the k largest |gradient + residual| entries (error feedback); PS Adam"
    default_lr = 0.006  # the tuned frontier's choice for Top-k 1 % at 10 and 30 epochs (results/frontier)
    Options = TopKOptions
    opts: TopKOptions

    def compressor(self, w: WorkerSide):
        from compression import TopK as Compressor

        return Compressor(self.shapes(), self.opts.ratio, device=w.device)


class DGC(_Sparse):
    name = "dgc"
    summary = "Deep Gradient Compression: momentum correction and masking, clipping, warm-up; PS SGD"
    optimizer = "sgd"  # momentum is applied on the workers (momentum correction)
    default_lr = 0.025  # the tuned frontier's choice at 30 epochs of 0.05 / 0.025 / 0.1 (0.1 at 10; results/frontier)
    paper_lr = 0.05  # DGC's own
    Options = DGCOptions
    opts: DGCOptions

    def dense_mask(self) -> list[bool]:
        return [len(s) <= 1 for s in self.shapes()]  # 1-D tensors (biases) go dense, as in DGC

    def compressor(self, w: WorkerSide):
        from compression import DGC as Compressor

        self._compressor = Compressor(self.shapes(), momentum=self.opts.momentum, clip_norm=self.opts.clip_norm,
                                      workers=self.run.workers, device=w.device, ratio=self.opts.ratio,
                                      seed=self.run.seed, step=w.step)
        w.state.append(self._compressor.ratio)  # initialised with the rest; set again every epoch
        return self._compressor

    def worker_epoch_start(self, w: WorkerSide, session, epoch: int) -> None:
        from compression import warmup_ratio

        self._compressor.set_ratio(warmup_ratio(epoch, self.opts.ratio, self.opts.warmup_epochs), session)
