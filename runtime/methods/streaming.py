"""Streaming DiLoCo (Douillard et al., 2025): DiLoCo whose model is synced a fragment at a time, the outer
gradients sent in 4 bits.

The layers are dealt to `--fragments F` fragments in turn (layer j to fragment j mod F: the paper's strided
split). Every worker trains with local Adam on every step, as local SGD. Fragment i syncs on the global steps s
with (s + 1 − o_i) a multiple of H, o_i = ⌊H·(i + 1)/F⌋ (torchft's offsets), so some fragment syncs every H/F
steps and each every H: the peak bytes of a sync are a fragment's, not the model's. At a sync of fragment i a
worker sends its outer gradient Δ = θ_anchor − θ_local over the fragment, each value in 4 bits (E3M0: a sign
and a power of two relative to the tensor's largest magnitude, 2⁰ … 2⁻⁶, or zero below 2^−6.5; the largest
magnitude sent as one float per tensor); the PS averages the workers' dequantized Δ, takes DiLoCo's outer
Nesterov step on that fragment (its velocity kept per coordinate, so per fragment), and replies with the
fragment's new values, which every worker takes for its fragment and its anchor (the paper's α = 0: no mixing
of local and global values). The last step of an epoch syncs every fragment at once (phase "all"), so the PS
evaluates, and a resume starts from, a model every worker shares, as for local SGD.

What the paper adds and this synchronous runtime does not: overlapping a fragment's exchange with the next τ
inner steps (τ = 0 here: the barrier waits), and the quantized reduce (the reply here is float32).
`--verify-sync` compares the synced fragment (Method.synced): the other fragments are the workers' own.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import tensorflow as tf

from helpers import argtypes
from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, mean, nesterov
from runtime.methods.options import Options, option

LEVELS = 7  # magnitudes 2^0 … 2^-6 of the tensor's largest; code 0 is zero (E3M0: 3 exponent bits, no mantissa)


@dataclass(frozen=True)
class StreamingOptions(Options):
    sync_every: int = option(64, "H: each fragment syncs every H steps, some fragment every H/F (the last step of "
                             "every epoch syncs them all); 64, tuned local SGD's and DiLoCo's best on LeNet-5 at 30 "
                             "epochs", argtypes.positive_int)
    fragments: int = option(2, "F: the layers dealt in turn to F fragments (layer j to fragment j mod F); at most the "
                            "model's layer count and H", argtypes.positive_int)
    outer_lr: float = option(0.35, "DiLoCo's outer learning rate on each fragment: 0.35, the tuned frontier's choice at "
                             "30 epochs of 0.7 / 0.35 / 1.0 (0.7, the papers', at 10; results/frontier)",
                             argtypes.positive_float)
    outer_momentum: float = option(0.9, "DiLoCo's outer Nesterov momentum (the papers' 0.9)", argtypes.fraction)
    outer_bits: int = option(4, "bits per value of the outer gradient a worker sends: 4 (E3M0, the paper's) or 32 "
                             "(float32)", argtypes.int_in(4, 32))


def quantize(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """E3M0 codes (uint8, one per value: bit 3 the sign, bits 0-2 the level, 0 = zero) and the largest magnitude."""
    x = tf.reshape(x, [-1])
    top = tf.reduce_max(tf.abs(x))
    ratio = tf.math.divide_no_nan(tf.abs(x), top)
    k = tf.round(-tf.math.log(tf.maximum(ratio, 1e-30)) / tf.math.log(2.0))  # the nearest power of two, in log scale
    level = tf.where(k >= LEVELS, 0.0, LEVELS - tf.clip_by_value(k, 0.0, LEVELS - 1))  # 7 … 1; 0: zero
    sign = tf.where(x < 0, 8.0, 0.0)
    return tf.cast(tf.where(level > 0, level + sign, 0.0), tf.uint8), top


def dequantize(codes: tf.Tensor, top: tf.Tensor) -> tf.Tensor:
    level = tf.cast(tf.bitwise.bitwise_and(codes, 7), tf.float32)
    magnitude = tf.where(level > 0, top * tf.pow(2.0, level - LEVELS), 0.0)
    return tf.where(tf.bitwise.bitwise_and(codes, 8) > 0, -magnitude, magnitude)


def pack(codes: tf.Tensor) -> tf.Tensor:
    """Two 4-bit codes a byte (an odd count padded with a zero code)."""
    codes = tf.concat([codes, tf.zeros([tf.size(codes) % 2], tf.uint8)], 0)
    pairs = tf.reshape(codes, [-1, 2])
    return tf.bitwise.bitwise_or(pairs[:, 0], tf.bitwise.left_shift(pairs[:, 1], 4))


def unpack(packed: tf.Tensor, n: int) -> tf.Tensor:
    low, high = tf.bitwise.bitwise_and(packed, 15), tf.bitwise.right_shift(packed, 4)
    return tf.reshape(tf.stack([low, high], 1), [-1])[:n]


def _concat(parts: list[tf.Tensor], dtype: tf.DType = tf.float32) -> tf.Tensor:
    """The parts one after another; an empty vector for none (a piece of the model may hold no tensor of a fragment)."""
    return tf.concat(parts, 0) if parts else tf.zeros([0], dtype)


class Streaming(Method):
    name = "streaming"
    summary = ("Streaming DiLoCo: local Adam; the model's fragments synced in turn, each every H steps, its outer "
               "gradient in 4 bits; the PS takes DiLoCo's outer step on the fragment")
    Options = StreamingOptions
    opts: StreamingOptions
    up_dtypes = (tf.uint8, tf.float32)  # the packed codes (or nothing at 32 bits); per tensor a float (or the values)
    default_lr = 0.006  # the tuned frontier's inner rate of local SGD and DiLoCo at H=64
    shardable = True  # per tensor: a piece's PS takes the outer step on its tensors of the fragment

    def __init__(self, layout, opts: StreamingOptions, run) -> None:
        super().__init__(layout, opts, run)
        layers = layout.layers()
        if opts.fragments > len(layers):
            raise ValueError(f"--fragments {opts.fragments}: {layout.model} has {len(layers)} layers to deal out; "
                             f"give at most {len(layers)}")
        if opts.fragments > opts.sync_every:
            raise ValueError(f"--fragments {opts.fragments} > --sync-every {opts.sync_every}: one fragment syncs at a "
                             f"time, so each needs a step of its own within H")
        if opts.outer_bits not in (4, 32):
            raise ValueError(f"--outer-bits {opts.outer_bits}: 4 (E3M0) or 32 (float32)")
        owner = {layer.name: j % opts.fragments for j, layer in enumerate(layers)}
        self.members = [[p for p in layout.params if owner[p.layer] == i] for i in range(opts.fragments)]
        self.ALL = opts.fragments
        self.phase_names = {**{i: f"fragment{i}" for i in range(opts.fragments)}, self.ALL: "all"}
        self.offsets = [opts.sync_every * (i + 1) // opts.fragments for i in range(opts.fragments)]

    # --- pieces of the model ----------------------------------------------------------------------------
    def for_part(self, layout) -> "Streaming":
        """The fragments are the whole model's (layers dealt over the whole layout), restricted to the piece."""
        part = copy.copy(self)
        names = {p.name for p in layout.params}
        part.layout, part.members = layout, [[p for p in m if p.name in names] for m in self.members]
        return part

    def _piece_tensors(self, parts: list, phase: int) -> list[list]:
        """Per piece, the phase's tensors it holds (layout order)."""
        return [[p for p in self._params(phase) if p.name in {q.name for q in part.layout.params}] for part in parts]

    def split(self, payload: list[tf.Tensor], parts: list, phase: int, exchange: int) -> list[list[tf.Tensor]]:
        """Each piece's values and (at 4 bits) tensors' largest magnitudes; its codes packed on their own."""
        held = self._piece_tensors(parts, phase)
        counts = [sum(p.size for p in ps) for ps in held]
        ends = [sum(counts[:k + 1]) for k in range(len(counts))]
        if self.opts.outer_bits == 32:
            return [[tf.zeros([0], tf.uint8), payload[1][end - n:end]] for n, end in zip(counts, ends)]
        codes = unpack(payload[0], ends[-1])
        tops = [sum(len(ps) for ps in held[:k]) for k in range(len(held) + 1)]
        return [[pack(codes[end - n:end]), payload[1][tops[k]:tops[k + 1]]] for k, (n, end) in enumerate(zip(counts, ends))]

    # --- the schedule, from the options alone (both sides) -------------------------------------------
    def _fragment_at(self, step: int) -> int | None:
        done = step + 1
        return next((i for i, o in enumerate(self.offsets) if (done - o) % self.opts.sync_every == 0), None)

    def is_local(self, step: int) -> bool:
        return (step + 1) % self.run.steps_per_epoch != 0 and self._fragment_at(step) is None

    def next_phase(self, step: int) -> int:
        return self.ALL if (step + 1) % self.run.steps_per_epoch == 0 else self._fragment_at(step)

    def _params(self, phase: int):
        return self.layout.params if phase == self.ALL else self.members[phase]

    def _slice(self, vector: tf.Tensor, phase: int) -> tf.Tensor:
        return _concat([vector[slice(*self.layout.offset(p.name))] for p in self._params(phase)])

    def _replace(self, vector: tf.Tensor, phase: int, values: tf.Tensor) -> tf.Tensor:
        """`vector` with the phase's fragment taken from `values` (the fragment's concatenation)."""
        mine, parts, at = {p.name for p in self._params(phase)}, [], 0
        for p in self.layout.params:
            start, end = self.layout.offset(p.name)
            if p.name in mine:
                parts.append(values[at:at + end - start])
                at += end - start
            else:
                parts.append(vector[start:end])
        return tf.concat(parts, 0)

    def synced(self, phase: int, model: tf.Tensor) -> tf.Tensor:
        return self._slice(model, phase)

    # --- the codec -----------------------------------------------------------------------------------
    def _encode(self, delta: tf.Tensor, phase: int) -> list[tf.Tensor]:
        if self.opts.outer_bits == 32:
            return [tf.zeros([0], tf.uint8), delta]
        codes, tops, at = [], [], 0
        for p in self._params(phase):
            c, top = quantize(delta[at:at + p.size])
            codes.append(c)
            tops.append(top)
            at += p.size
        return [pack(tf.concat(codes, 0)), tf.stack(tops)]

    def _decode(self, payload: list[tf.Tensor], phase: int) -> tf.Tensor:
        if self.opts.outer_bits == 32:
            return payload[1]
        params = self._params(phase)
        if not params:  # a piece of the model with none of the fragment: its (empty) payloads are still taken
            with tf.control_dependencies(payload):
                return tf.zeros([0])
        codes = unpack(payload[0], sum(p.size for p in params))
        parts, at = [], 0
        for t, p in enumerate(params):
            parts.append(dequantize(codes[at:at + p.size], payload[1][t]))
            at += p.size
        return _concat(parts)

    def payload_bytes(self, phase: int) -> int:
        n = sum(p.size for p in self._params(phase))
        return 4 * n if self.opts.outer_bits == 32 else (n + 1) // 2 + 4 * len(self._params(phase))

    # --- worker ---------------------------------------------------------------------------------
    def build_join(self, w: WorkerSide) -> tf.Operation:
        self._anchor = w.variable("streaming_anchor", tf.zeros([self.layout.total]))  # the global model as last taken
        return self._anchor.assign(w.local.vector()).op

    def build_local(self, w: WorkerSide) -> tf.Operation:
        return w.adam(w.local.variables())

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        phases = {}
        for phase in self.phase_names:
            train = w.adam(w.local.variables())
            with tf.control_dependencies([train]):
                local = w.local.vector()
            up = self._encode(self._slice(self._anchor, phase) - self._slice(local, phase), phase)

            def apply(reply: list[tf.Tensor], phase: int = phase) -> tf.Operation:
                merged = self._replace(w.local.vector(), phase, reply[0])
                return tf.group(w.local.assign(merged), self._anchor.assign(self._replace(self._anchor, phase, reply[0])))

            phases[phase] = WorkerPhase(up=up, apply=apply)
        return phases

    # --- PS -------------------------------------------------------------------------------------
    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        momentum = self.opts.outer_momentum
        velocity = ps.variable("outer_velocity", tf.zeros([self.layout.total])) if momentum > 0.0 else None
        phases = {}
        for phase in self.phase_names:
            gradient = mean([self._decode(p, phase) for p in ps.gather()])
            new, v = nesterov(self._slice(ps.model, phase), gradient, self.opts.outer_lr, momentum,
                              None if velocity is None else self._slice(velocity, phase))
            writes = [ps.model.assign(self._replace(ps.model, phase, new))]
            if v is not None:  # the velocity of the fragment's coordinates only
                writes.append(velocity.assign(self._replace(velocity, phase, v)))
            with tf.control_dependencies(writes):
                phases[phase] = PSPhase(reply=[tf.identity(new)])
        return phases
