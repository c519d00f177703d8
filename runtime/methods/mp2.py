"""MP²: workers train and push the pushed group; the PS predicts the rest from their average.

Phases: FULL (every layer trained and pushed, as the baseline) and PARTIAL (only the pushed group).
`--full-push-epochs K` makes the last K epochs FULL. `--prediction hold` is the control run that
shows what the predictor adds: the same schedule, with the predicted group held at its last fully
pushed value instead of predicted.

What comes back (`--broadcast`): `full` (the paper's) sends the whole model; `subset` sends only the
averaged pushed group, and every worker runs the same predictor itself to fill in the rest. A
worker given the PS's `--predictor` file reads it itself (the handshake compares the files' SHA-256);
otherwise the PS sends the predictor's weights whenever they change (the first PARTIAL step, and after
online MP² promotes a new predictor): phase PARTIAL_WITH_WEIGHTS, counted like any payload.

With `--push-codec sparseloco` the pushed group goes up SparseLoCo's way (runtime/methods/sparseloco.py): each
worker keeps an error buffer of its pushed group, e ← β·e + (anchor − local), sends the chunk-wise Top-k of e in 2
bits and keeps the rest; the PS moves the pushed group of its model (every worker's anchor) by the mean of the sent
entries and predicts the rest from it. Full steps still send the whole model dense (online MP²'s snapshots need it).
The reply is the whole model (--broadcast full): a worker could predict the rest itself only with every version of
the predictor, whose weights outweigh the compressed pushes many times.

With `--correction-ratio r` > 0 (the default) workers also send, on partial steps, a Top-k of their gradient
of the predicted group, from which the PS learns a correction it adds to every prediction
(runtime/methods/correction.py); 0 is the paper's MP².
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from models import PREDICTED, PUSHED
from runtime.methods.base import Method, PSContext, PSPhase, PSSide, Whole, WorkerPhase, WorkerSide, outer_step, syncs_at
from runtime.methods.baseline import average_ps, full_push_worker
from runtime.methods.correction import Correction, compress_gradient
from runtime.methods.mp2_options import MP2Options
from runtime.methods.schedule import HeldSchedule, Schedule

FULL, PARTIAL, PARTIAL_WITH_WEIGHTS = 0, 1, 2


class MP2(Method):
    name = "mp2"
    summary = "workers push the pushed group (--push); the PS predicts the rest and sends the model"
    Options = MP2Options
    opts: MP2Options  # the values used, derived ones included (the summary's method_options)

    phase_names = {FULL: "full", PARTIAL: "partial", PARTIAL_WITH_WEIGHTS: "partial+weights"}
    down_dtypes = (tf.float32, tf.float32)  # the model or the pushed group; the predictor's weights (often empty)
    shardable = True  # its own build_pieces: the prediction runs on the first PS task over the whole pushed group

    def __init__(self, layout, opts: MP2Options, run) -> None:
        super().__init__(layout, opts, run)
        every = opts.sync_every
        total = run.epochs * run.steps_per_epoch
        # The schedule (online MP², the control) counts exchanges: step s is exchange self._exchange[s].
        self._exchange = {s: i for i, s in enumerate(t for t in range(total) if syncs_at(t, run.steps_per_epoch, every))}
        self._exchanges_per_epoch = sum(1 for t in range(run.steps_per_epoch) if syncs_at(t, run.steps_per_epoch, every))
        self.opts = opts.for_run(self._exchanges_per_epoch)
        self.codec = None  # --push-codec sparseloco: the pushed group's payload
        if self.opts.push_codec == "sparseloco":
            from runtime.methods.sparseloco import Codec

            self.codec = Codec([p.shape for p in layout.group(PUSHED)], self.opts.push_top_k)
        # The model (full steps; the pushed group with the dense codec), the codec's payload, the predicted group's
        # sparse gradient: every phase sends every slot, an unused one empty.
        self.up_dtypes = ((tf.float32,) + (self.codec.dtypes if self.codec else ())
                          + ((tf.float32, tf.int32) if self.opts.correction_ratio > 0 else ()))
        self.path, self.weights, self.sha256 = None, None, None
        self.schedule: Schedule | None = None  # online MP², or the control on its schedule
        self.holders: set[int] = set()  # workers that read the predictor file themselves (PS side)
        self.partial_steps, self.full_steps = 0, {}  # the PS's count of steps, full ones by reason

    def _predictor(self):
        """The predictor the PS and (with subset broadcast) every worker run: the file's, or online MP²'s."""
        from predictor import Predictor

        if self.weights is not None:
            return Predictor(self.layout, weights=self.weights, seed=self.run.seed)
        return Predictor(self.layout, seed=self.run.seed, dense_rank=self.opts.online_dense_rank)

    def _read_predictor(self) -> None:
        from predictor import load_checkpoint, resolve_path

        self.path = resolve_path(self.opts.predictor)
        self.weights, _ = load_checkpoint(self.path, self.layout)
        with open(self.path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()

    def prepare_ps(self, context: PSContext, dataset, log=print) -> None:
        self._check_options()
        o = self.opts
        if o.prediction == "predictor" and o.predictor:
            self._read_predictor()
        elif o.control_switch_step is not None:
            self.schedule = HeldSchedule(o)
        elif o.online:
            from models import get
            from runtime.methods.online import OnlineController

            model = get(context.model, self.layout.classes, push=",".join(self.layout.pushed_layers()))
            self.schedule = OnlineController(model, dataset, Path(context.out), o, list(context.data_flags), context.seed,
                                             self._exchanges_per_epoch, context.step_timeout / 2, log,
                                             resuming=context.resume)
            classifier = self.layout.layers()[-1].name
            if classifier not in self.layout.pushed_layers():  # --push is shared with the workers: only said
                log(f"online MP² predicts the classifier {classifier} here (--push {context.push}); the measured "
                    f"setting pushes it too: --push front+head")

    def precheck(self) -> None:
        self._check_options()
        if self.opts.prediction == "predictor" and self.opts.predictor:
            self._read_predictor()

    def _check_options(self) -> None:
        if self.layout.pushed == self.layout.total:
            raise ValueError(f"--push {','.join(self.layout.pushed_layers())} pushes every layer, which leaves MP² "
                             f"nothing to predict: push fewer layers (e.g. --push front), or use --method baseline")
        self.opts.check()

    def ps_inputs(self) -> dict:
        return {} if self.weights is None else {"predictor": self.path, "predictor_sha256": self.sha256}

    def admit_worker(self, index: int, holds: dict) -> str:
        theirs = holds.get("predictor_sha256")
        if theirs is None:
            if self.opts.broadcast == "subset" and self.weights is not None:
                from predictor.structure import infer_head_rank

                rank = infer_head_rank(self.weights)
                if rank != 1:  # a worker builds its predictor before any weights could arrive
                    return (f"the PS's predictor {self.path} has decoder heads of rank {rank}, which a worker "
                            f"cannot receive over the wire: give the worker the same file with --predictor")
            return ""
        if self.sha256 is None:
            return ("it was given --predictor, but this PS has no predictor file (online MP² trains its own and "
                    "sends it): start the worker without --predictor")
        if theirs != self.sha256:
            return (f"its --predictor {holds.get('predictor')} (SHA-256 {theirs[:12]}…) is not the PS's "
                    f"{self.path} ({self.sha256[:12]}…): give it the same file, or none (the PS then sends the weights)")
        self.holders.add(index)
        return ""

    # --- schedule (decided on the PS, announced in each reply) -----------------------------------
    def _final(self, step: int) -> bool:
        return step // self.run.steps_per_epoch >= self.run.epochs - self.opts.full_push_epochs

    def next_phase(self, step: int) -> int:
        """The phase announced for `step`. The schedule is only asked; the one thing noted is which predictor
        version the workers were sent (--broadcast subset sends new weights once)."""
        if self._final(step) or (self.schedule is not None and self.schedule.wants_full(self._exchange[step])):
            return FULL
        version = 1 + (self.schedule.version if self.schedule is not None else 0)
        if self.opts.broadcast == "subset" and self.sent_version != version:
            self.sent_version = version
            if version == 1 and len(self.holders) == self.run.workers:
                return PARTIAL  # every worker read the PS's predictor file itself
            return PARTIAL_WITH_WEIGHTS
        return PARTIAL

    def after_step(self, session: tf.compat.v1.Session, step: int, phase: int) -> None:
        if phase != FULL:
            self.partial_steps += 1
        else:
            reason = ("final epochs" if self._final(step) or self.schedule is None
                      else self.schedule.full_reason(self._exchange[step]))
            self.full_steps[reason] = self.full_steps.get(reason, 0) + 1
        if self.schedule is not None:
            self.schedule.after_step(session, self._exchange[step], phase == FULL, lambda: session.run(self._model))

    def drain_events(self) -> list[dict]:
        if self.schedule is None:
            return []
        events = self.schedule.take_events()
        self._events += events
        return events

    def stats(self) -> dict:
        steps = {"partial": self.partial_steps, "full": sum(self.full_steps.values()), "full_by_reason": dict(self.full_steps)}
        if self.schedule is None:
            stats = {"steps": steps}
            if self.opts.broadcast == "subset" and self.weights is not None:
                stats["workers_reading_the_predictor_file"] = len(self.holders)
            return stats
        self.drain_events()
        stats = {"steps": steps, **self.schedule.stats()}
        stats["online"]["events"] = self._events
        return stats

    def closing_lines(self) -> list[str]:
        """What MP² did, for the PS's last lines: partial steps, full ones and why; a warning if it never predicted."""
        full, total = sum(self.full_steps.values()), self.partial_steps + sum(self.full_steps.values())
        if not total:
            return []
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.full_steps.items(), key=lambda kv: -kv[1]))
        what = "predicted the rest" if self.opts.prediction == "predictor" else "held the rest"
        lines = [f"mp2: {self.partial_steps} of {total} steps pushed the pushed group ({what}), "
                 f"{full} the whole model" + (f" ({why})" if why else "")]
        if self.partial_steps == 0:
            because = self.schedule.never_switched_because() if self.schedule is not None else (
                f"--full-push-epochs {self.opts.full_push_epochs} covers the whole run")
            lines.append(f"warning: MP² never switched to prediction: all {total} steps pushed the whole model ({because})")
        return lines

    def close(self) -> None:
        if self.schedule is not None:
            self.schedule.stop()

    def saves_mid_epoch(self) -> bool:
        return self.schedule is None  # online MP²'s checkpoint waits for a training round in flight

    def checkpoint(self, session: tf.compat.v1.Session) -> tuple[dict[str, np.ndarray], dict]:
        meta = {"partial_steps": self.partial_steps, "full_steps": self.full_steps, "sent_version": self.sent_version,
                "events": self._events}
        arrays: dict[str, np.ndarray] = {}
        if self.schedule is not None:
            arrays, meta["schedule"] = self.schedule.checkpoint(session)
        return arrays, meta

    def restore(self, session: tf.compat.v1.Session, arrays: dict[str, np.ndarray], meta: dict, step: int) -> None:
        if not meta:
            return
        self.partial_steps, self.full_steps = meta["partial_steps"], dict(meta["full_steps"])
        self.sent_version, self._events = meta["sent_version"], list(meta["events"])
        if self.schedule is not None:
            self.schedule.restore(session, arrays, meta["schedule"], step)

    def is_local(self, step: int) -> bool:
        return step not in self._exchange

    # --- worker ---------------------------------------------------------------------------------
    def prepare_worker(self, log=print) -> None:
        self._check_options()
        if self.opts.broadcast == "subset" and self.opts.predictor:  # full broadcast: the PS's file only
            self._read_predictor()
            log(f"reads the predictor {self.path} itself")

    def worker_holds(self) -> dict:
        return {} if self.sha256 is None else {"predictor": self.path, "predictor_sha256": self.sha256}

    def build_join(self, w: WorkerSide) -> tf.Operation | None:
        if self.codec is None:
            return None
        # The anchor is the pushed group of the model the PS last sent (at admission, then every reply).
        self._anchor = w.variable("push_anchor", tf.zeros([self.layout.pushed]))
        self._error = w.variable("push_error", tf.zeros([self.layout.pushed]))
        return self._anchor.assign(w.local.vector(PUSHED)).op

    def _encode_push(self, w: WorkerSide, after: tf.Operation) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """(the pushed group's slots of a partial step's payload, the same slots of a full step's: empty)."""
        empty = [tf.zeros([0], dtype) for dtype in self.codec.dtypes] if self.codec else []
        with tf.control_dependencies([after]):
            if self.codec is None:
                return [w.local.vector(PUSHED)], empty
            error = self.opts.push_error_decay * self._error + (self._anchor - w.local.vector(PUSHED))
        tensors = tf.split(error, [p.size for p in self.layout.group(PUSHED)])
        up, sent = self.codec.encode([tf.reshape(t, p.shape) for t, p in zip(tensors, self.layout.group(PUSHED))])
        kept = error - tf.concat([tf.reshape(x, [-1]) for x in sent], 0)
        with tf.control_dependencies([self._error.assign(kept)]):
            return [tf.zeros([0], tf.float32), *[tf.identity(u) for u in up]], empty

    def _take(self, w: WorkerSide, model: tf.Tensor) -> tf.Operation:
        """The model the PS sent becomes the worker's (and its pushed group the codec's anchor)."""
        taken = w.local.assign(model)
        if self.codec is None:
            return taken
        with tf.control_dependencies([taken]):
            return self._anchor.assign(self.layout.split(model)[0]).op

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        self._check_options()
        pushed_vars, predicted_vars = w.local.variables(PUSHED), w.local.variables(PREDICTED)
        extra_up = []
        if self.opts.correction_ratio > 0:  # the predicted group's gradient, for the PS's correction
            grads = w.gradients(pushed_vars + predicted_vars)
            sent = compress_gradient(w, predicted_vars, grads[len(pushed_vars):], self.opts.correction_ratio)
            train = tf.group(w.adam(pushed_vars, grads[:len(pushed_vars)]), sent.update)
            extra_up = [sent.values, sent.indices]
        else:  # (built in this order, the paper's MP² repeats the runs of earlier versions bit for bit)
            train = w.adam(pushed_vars)
            grads = w.gradients(pushed_vars + predicted_vars)
        pushed_up, full_codec_slots = self._encode_push(w, train)
        with tf.control_dependencies([train]):
            up = [*pushed_up, *[tf.identity(t) for t in extra_up]]
        # Full steps train the predicted group too, on an Adam clock of its own (it skips the partial steps).
        phases = {FULL: full_push_worker(w, train=tf.group(
            w.adam(pushed_vars, grads[:len(pushed_vars)]),
            w.adam(predicted_vars, grads[len(pushed_vars):], clock="predicted")))}
        phases[FULL].up += full_codec_slots
        phases[FULL].apply = lambda reply: self._take(w, reply[0])
        if extra_up:  # every phase sends the same dtypes; a full step has no gradient to send
            phases[FULL].up += [tf.zeros([0], tf.float32), tf.zeros([0], tf.int32)]
        # Back to full steps after partial ones: the predicted layers' Adam momentum is stale.
        phases[FULL].enter = w.forget_momentum(predicted_vars)
        # Between exchanges (--sync-every H > 1) a worker trains every layer as on a full step, with the same
        # optimizers: the predicted layers keep learning locally until the next exchange replaces them.
        self._local_train = None
        if self.opts.sync_every > 1:
            self._local_train = tf.group(w.adam(pushed_vars, grads[:len(pushed_vars)]),
                                         w.adam(predicted_vars, grads[len(pushed_vars):], clock="predicted"))
        if self.opts.broadcast == "full":
            phases[PARTIAL] = WorkerPhase(up=up, apply=lambda reply: self._take(w, reply[0]))
            return phases
        with tf.device(w.device):  # the same predictor as the PS's: read from its file, or when its weights arrive
            predictor = self._predictor()
        w.state += list(predictor.weight_vars.values())

        def apply(reply: list[tf.Tensor], with_weights: bool) -> tf.Operation:
            loads = []
            if with_weights:
                parts = tf.split(reply[1], [int(np.prod(v.shape)) for v in predictor.weight_vars.values()])
                loads = [v.assign(tf.reshape(x, v.shape)) for v, x in zip(predictor.weight_vars.values(), parts)]
            with tf.control_dependencies(loads):
                return w.local.assign(predictor(tf.reshape(reply[0], [self.layout.pushed])))

        phases[PARTIAL] = WorkerPhase(up=up, apply=lambda reply: apply(reply, False))
        phases[PARTIAL_WITH_WEIGHTS] = WorkerPhase(up=up, apply=lambda reply: apply(reply, True))
        return phases

    def build_local(self, w: WorkerSide) -> tf.Operation | None:
        return self._local_train  # built with the phases (build_worker runs first)

    # --- PS -------------------------------------------------------------------------------------
    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        return self.build_pieces([ps])[0][1]

    def build_pieces(self, sides: list[PSSide]) -> list[tuple[Method, dict[int, PSPhase]]]:
        """The PS's graph over the pieces of the model (several PS tasks): each piece averages its slice of the pushed
        group (or, on a full step, of the model), the prediction runs on the first piece's task over the averages
        put together, and each piece is written and replies with its slice (`Whole`). The codec's and the
        correction's small payloads go to the first piece whole (`split`)."""
        whole = Whole(self.layout, sides)
        ps = whole.side
        self._model, self._events, self._velocity = whole.read(), [], None
        self.sent_version = 0  # the predictor version the workers were last sent (subset broadcast)
        empty = tf.zeros([0], tf.float32)
        pushed_sizes = [s.layout.pushed for s in sides]
        correction = None
        with tf.device(whole.device):
            if self.opts.correction_ratio > 0:
                correction = Correction(ps, self.run.lr)
            if self.opts.prediction == "predictor":
                from runtime.methods.online import OnlineController

                self.predictor = self._predictor()  # online: untrained until the first round passes its check
                if isinstance(self.schedule, OnlineController):
                    self.schedule.build(self.predictor, ps.device, adjust=None if correction is None else correction.added)
                weights = tf.concat([tf.reshape(v, [-1]) for v in self.predictor.weight_vars.values()], 0)
        phases: list[dict[int, PSPhase]] = [{} for _ in sides]
        partial_phases = [PARTIAL] + ([PARTIAL_WITH_WEIGHTS] if self.opts.broadcast == "subset" else [])
        for phase in partial_phases:
            pieces = whole.gather()
            payloads = pieces[0]  # the codec's and the correction's slots come whole to the first piece
            if self.codec is None:
                means = whole.means(pieces, pushed_sizes)
                average = whole.concat(means)
            with tf.device(whole.device):
                if self.codec is not None:  # SparseLoCo's step from the pushed group every worker holds as its anchor
                    average = self.layout.split(self._model)[0] - self.codec.aggregate([p[1:4] for p in payloads])
                if correction is not None:  # its payload is the last two slots
                    before, after = correction.update([[p[0], *p[-2:]] for p in payloads])
                if self.opts.prediction == "predictor":
                    full = self.predictor(average)
                    if correction is not None:
                        full = correction.added(full, after)
                else:  # the control: the predicted group stays where the last full push left it (moved by the correction)
                    held = self.layout.split(self._model)[1]
                    full = self.layout.join(average, held if correction is None else held + (after - before))
                full, velocity = self._outer_step(ps, full)
            # Every piece's dequeue must run, even one whose slots are empty (the codec's pushed slot).
            taken = [t for piece in pieces for p in piece for t in p]
            models, written = whole.write(full, after=[*velocity, *taken])
            if self.opts.broadcast == "full":
                replies = [[m, empty] for m in models]
            else:  # (refused with the codec) each piece's slice of the averaged pushed group, the first's with the weights
                sent = weights if phase == PARTIAL_WITH_WEIGHTS else empty
                replies = [[m, sent if k == 0 else empty] for k, m in enumerate(means)]
            for k, piece_phase in enumerate(whole.phases(replies, written)):
                phases[k][phase] = piece_phase
        if self._outer:
            pieces = whole.gather()
            with tf.device(whole.device):
                new, velocity = self._outer_step(ps, whole.concat(whole.means(pieces, [s.layout.total for s in sides])))
            models, written = whole.write(new, after=velocity)
            for k, piece_phase in enumerate(whole.phases([[m, empty] for m in models], written)):
                phases[k][FULL] = piece_phase
        else:
            for k, side in enumerate(sides):
                with tf.device(side.device):
                    full_phase = average_ps(side)
                    phases[k][FULL] = PSPhase(reply=[*full_phase.reply, empty])
        return [(self, p) for p in phases]

    # --- pieces (several PS tasks) ------------------------------------------------------------
    def join(self, replies: list[list[tf.Tensor]], parts: list, phase: int, exchange: int) -> list[tf.Tensor]:
        return [tf.concat(slot, 0) for slot in zip(*replies)]

    def split(self, payload: list[tf.Tensor], parts: list, phase: int, exchange: int) -> list[list[tf.Tensor]]:
        """Slot 0 (the model on a full step, the pushed group on a partial one; empty with the codec) cut into the
        pieces' slices; the codec's and the correction's slots go whole to the first piece, the others' empty."""
        if phase == FULL:
            spans = [(p.start, p.end) for p in parts]
        else:
            ends = np.cumsum([p.layout.pushed for p in parts]) if self.codec is None else np.zeros(len(parts), int)
            spans = list(zip([0, *ends[:-1]], ends))
        rest = payload[1:]
        return [[payload[0][int(a):int(b)], *(rest if k == 0 else [tf.zeros([0], t.dtype) for t in rest])]
                for k, (a, b) in enumerate(spans)]

    @property
    def _outer(self) -> bool:
        return self.opts.outer_lr != 1.0 or self.opts.outer_momentum != 0.0

    def _outer_step(self, ps: PSSide, target: tf.Tensor) -> tuple[tf.Tensor, list[tf.Operation]]:
        """MP² inside DiLoCo: the outer step towards `target` (the model this exchange assembled), one velocity
        for every phase; `target` itself without an outer step."""
        if not self._outer:
            return target, []
        momentum = self.opts.outer_momentum
        if momentum > 0.0 and self._velocity is None:
            self._velocity = ps.variable("outer_velocity", tf.zeros([self.layout.total]))
        return outer_step(self._model, target, self.opts.outer_lr, momentum, self._velocity)
