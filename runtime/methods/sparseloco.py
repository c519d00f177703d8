"""SparseLoCo (Sarfi, Thérien, Lidin, Belilovsky, 2025): DiLoCo's pseudo-gradient, error feedback, chunk-wise
Top-k in 2 bits, and an outer step without momentum.

Workers train with local Adam on every step (as local SGD); every `--sync-every`-th step and at epoch ends
each worker forms its pseudo-gradient Δ = θ_anchor − θ_local (θ_anchor: the global model it last received),
adds it into its error buffer e ← β·e + α·Δ, sends the chunk-wise Top-k of e with its values in 2 bits
(compression/sparseloco.py: each index in 12 bits, each value in 2 bits, five floats per tensor) and keeps
e − (what it sent, as the PS will read it). The aggregate of a coordinate is the mean over the workers that
selected it (the reference's scatter-mean), and θ ← θ_anchor − α·aggregate: the decayed buffer takes the
place of outer momentum.

**The reply relays the payloads.** The union of four workers' entries at 3 % density is not sparse
enough to pay for full positions and float values, and the aggregate's values are no longer 2-bit; the
PS instead sends every worker's packed payload back to every worker (N times one push, bytes exact), and
every side decodes them and applies the same update in the same order, so the PS and every worker hold
the same model, bit for bit, after every sync (`--verify-sync`).
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from compression import sparseloco as sl
from helpers import argtypes
from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, ordered_sum, spans, syncs_at, tensors_of
from runtime.methods.options import Options, option


@dataclass(frozen=True)
class SparseLoCoOptions(Options):
    sync_every: int = option(64, "steps between syncs (H; the last step of every epoch syncs too): 64, the tuned "
                             "frontier's best on LeNet-5 at 30 epochs (results/frontier; the reference's is 15)",
                             argtypes.positive_int)
    outer_lr: float = option(1.0, "the outer rate α: e ← β·e + α·Δ and θ ← θ − α·aggregate (the reference's 1)",
                             argtypes.positive_float)
    error_decay: float = option(0.95, "β, the error buffer's decay per sync (the reference's 0.95)", argtypes.fraction)
    chunk_top_k: int = option(sl.TOP_K, f"entries sent of each {sl.CHUNK}×{sl.CHUNK} chunk (density k/{sl.CHUNK ** 2}; "
                              f"the reference's {sl.TOP_K})", argtypes.int_in(1, sl.CHUNK ** 2))


class Codec:
    """SparseLoCo's payload for a list of tensors of fixed shapes: [packed indices, packed bins, floats].

    The same graph on every side: a worker encodes its error buffer, and the PS and every worker decode the
    same payloads and take the same aggregate (per coordinate, the mean over the workers that sent it)."""

    dtypes = (tf.uint8, tf.uint8, tf.float32)

    def __init__(self, shapes: list[tuple[int, ...]], top_k: int = sl.TOP_K) -> None:
        self.plans = [sl.ChunkPlan.of(s, top_k=top_k) for s in shapes]

    def wire_bytes(self) -> int:
        """Bytes of one payload."""
        return sum(p.wire_bytes() for p in self.plans)

    def encode(self, tensors: list[tf.Tensor]) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """(the payload, each tensor's selection as every side will read it back)."""
        indices, bins, floats, sent = [], [], [], []
        for x, plan in zip(tensors, self.plans):
            index, value = sl.top_k(x, plan)
            bin_, params = sl.quantize(value)
            indices.append(sl.pack_indices(index))
            bins.append(sl.pack_bins(bin_))
            floats.append(params)
            sent.append(sl.scatter(index, sl.dequantize(bin_, params), plan))
        return [tf.concat(indices, 0), tf.concat(bins, 0), tf.concat(floats, 0)], sent

    def decode(self, payload: list[tf.Tensor]) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """Each tensor's (dense values, dense 0/1 selection mask) of one payload."""
        packed_indices, packed_bins, floats = payload
        out, i_at, b_at = [], 0, 0
        for t, plan in enumerate(self.plans):
            n_i, n_b = sl.index_bytes(plan.entries), sl.bin_bytes(plan.entries)
            index = sl.unpack_indices(packed_indices[i_at:i_at + n_i], plan.entries)
            bin_ = sl.unpack_bins(packed_bins[b_at:b_at + n_b], plan.entries)
            params = floats[t * sl.PARAMS:(t + 1) * sl.PARAMS]
            out.append((sl.scatter(index, sl.dequantize(bin_, params), plan),
                        sl.scatter(index, tf.ones([plan.entries]), plan)))
            i_at, b_at = i_at + n_i, b_at + n_b
        return out

    def aggregate(self, payloads: list[list[tf.Tensor]]) -> tf.Tensor:
        """Per coordinate, the mean over the payloads that selected it (0 where none did), as a flat vector."""
        decoded = [self.decode(p) for p in payloads]
        parts = []
        for t in range(len(self.plans)):
            total = ordered_sum([d[t][0] for d in decoded])
            count = ordered_sum([d[t][1] for d in decoded])
            parts.append(tf.reshape(tf.math.divide_no_nan(total, count), [-1]))
        return tf.concat(parts, 0)

    def split_relayed(self, reply: list[tf.Tensor], count: int) -> list[list[tf.Tensor]]:
        """`count` payloads sent one after another (the PS's relay) back into one payload each."""
        n_i = sum(sl.index_bytes(p.entries) for p in self.plans)
        n_b = sum(sl.bin_bytes(p.entries) for p in self.plans)
        n_f = sl.PARAMS * len(self.plans)
        return [[reply[0][w * n_i:(w + 1) * n_i], reply[1][w * n_b:(w + 1) * n_b], reply[2][w * n_f:(w + 1) * n_f]]
                for w in range(count)]

    @staticmethod
    def relay(payloads: list[list[tf.Tensor]]) -> list[tf.Tensor]:
        """Every payload, one after another in worker order."""
        return [tf.concat([p[k] for p in payloads], 0) for k in range(3)]


class SparseLoCo(Method):
    name = "sparseloco"
    summary = ("local Adam; every H-th step and at epoch ends each worker sends the chunk-wise Top-k of its error-fed "
               "pseudo-gradient in 2 bits; every side applies the mean of the relayed payloads")
    Options = SparseLoCoOptions
    opts: SparseLoCoOptions
    up_dtypes = Codec.dtypes    # packed 12-bit indices, packed 2-bit bins, per-tensor floats
    down_dtypes = Codec.dtypes  # every worker's three, one after another in worker order
    phase_names = {0: "sync"}
    default_lr = 0.0015  # the tuned frontier's choice at 30 epochs for H=16 and H=64 (0.003 at 10 epochs)
    shardable = True  # encoded and decoded per tensor; a piece's PS relays its tensors' parts of the payloads

    def __init__(self, layout, opts: SparseLoCoOptions, run) -> None:
        super().__init__(layout, opts, run)
        self.codec = Codec([p.shape for p in layout.params], self.opts.chunk_top_k)
        self.plans = self.codec.plans

    def is_local(self, step: int) -> bool:
        return not syncs_at(step, self.run.steps_per_epoch, self.opts.sync_every)

    def payload_bytes(self) -> int:
        """Bytes one worker sends at a sync (a reply is `workers` times this)."""
        return self.codec.wire_bytes()

    def _step(self, anchor: tf.Tensor, payloads: list[list[tf.Tensor]]) -> tf.Tensor:
        """θ_anchor − α · (per coordinate, the mean over the workers that sent it), as a flat vector."""
        return anchor - self.opts.outer_lr * self.codec.aggregate(payloads)

    # --- pieces of the model ----------------------------------------------------------------------------
    def _piece_spans(self, parts: list) -> list[list[tuple[int, int]]]:
        """Per piece, its slice of each of a payload's three arrays (each holds the tensors' parts in layout order,
        each tensor's of a size fixed by its plan, as `Codec.decode` reads them)."""
        sizes = [[sl.index_bytes(p.entries) for p in self.plans], [sl.bin_bytes(p.entries) for p in self.plans],
                 [sl.PARAMS] * len(self.plans)]
        return [[spans(s, tensors_of(self.layout, part)) for s in sizes] for part in parts]

    def split(self, payload: list[tf.Tensor], parts: list, phase: int, exchange: int) -> list[list[tf.Tensor]]:
        return [[x[a:b] for x, (a, b) in zip(payload, runs)] for runs in self._piece_spans(parts)]

    def join(self, replies: list[list[tf.Tensor]], parts: list, phase: int, exchange: int) -> list[tf.Tensor]:
        """A piece's reply is every worker's part for it, worker after worker; the whole reply every worker's
        payload, worker after worker: each worker's parts put together in piece order."""
        sizes = [[b - a for a, b in runs] for runs in self._piece_spans(parts)]  # [piece][array]: one worker's part
        return [tf.concat([r[k][w * size[k]:(w + 1) * size[k]] for w in range(self.run.workers)
                           for r, size in zip(replies, sizes)], 0) for k in range(3)]

    # --- worker ---------------------------------------------------------------------------------
    def build_join(self, w: WorkerSide) -> tf.Operation:
        # The anchor is the model the PS gave at admission (a resume then restores the saved one).
        self._anchor = w.variable("sparseloco_anchor", tf.zeros([self.layout.total]))
        self._error = w.variable("sparseloco_error", tf.zeros([self.layout.total]))
        return self._anchor.assign(w.local.vector()).op

    def build_local(self, w: WorkerSide) -> tf.Operation:
        return w.adam(w.local.variables())

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        train = w.adam(w.local.variables())
        with tf.control_dependencies([train]):
            delta = self._anchor - w.local.vector()
        error = self.opts.error_decay * self._error + self.opts.outer_lr * delta
        parts = self.layout.unflatten(error)
        up, sent = self.codec.encode([parts[p.name] for p in self.layout.params])
        kept = error - tf.concat([tf.reshape(s, [-1]) for s in sent], 0)
        with tf.control_dependencies([self._error.assign(kept)]):
            up = [tf.identity(u) for u in up]

        def apply(reply: list[tf.Tensor]) -> tf.Operation:
            new = self._step(self._anchor, self.codec.split_relayed(reply, self.run.workers))
            with tf.control_dependencies([w.local.assign(new)]):
                return self._anchor.assign(new).op

        return {0: WorkerPhase(up=up, apply=apply)}

    # --- PS -------------------------------------------------------------------------------------
    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        payloads = ps.gather()
        new = self._step(ps.model, payloads)
        with tf.control_dependencies([ps.model.assign(new)]):
            return {0: PSPhase(reply=Codec.relay(payloads))}
