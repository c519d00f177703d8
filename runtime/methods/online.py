"""Online MP²: no predictor file, no prior run — the PS learns the predictor while the model trains.

    warm-up   FULL steps (the baseline) while the PS snapshots the model every --online-snapshot-every
              steps into OUT/online/snapshots
    train     once --warmup-snapshots are in, a round trains a predictor from them: by default in the
              PS's own graph for a bounded number of optimizer steps (--online-rounds graph), or in an
              mp2_train_stage.py process (--online-rounds stage); beside the training, and with
              --online-wait the PS holds the step barrier until it is done (the stall is measured)
    switch    the new predictor is loaded when it passes the check below; workers switch to PARTIAL
    refresh   while PARTIAL, a window of --refresh-steps FULL steps every --refresh-every steps: at its
              end a fresh snapshot, and the check
    retrain   after every --retrain-after new snapshots a new predictor is trained from all of them
    partial   with --partial-snapshot-every K, also a snapshot every K PARTIAL steps: the PS's model, its
              pushed group the workers' average. The result loss reads only a snapshot's pushed group
              (the predicted group is the predictor's to make), so these train the predictor as well as
              full pushes do, and they cost no traffic: the predictor keeps learning the task between
              refresh windows
    fallback  a check that fails sends the workers back to FULL until a retrained predictor passes

A warm start (--predictor-init PATH, e.g. a predictor trained on another dataset): PATH is checked at
the first warm-up snapshot and, if it passes, the workers switch at once; every training round starts
from the last predictor that passed (PATH until one of the run's own does), so the rounds adapt it to
this task instead of learning from nothing.

The control (--prediction hold) with the same schedule (--control-switch-step N, N = the MP² run's
switch step): full pushes until step N, then the same refresh windows; no predictor, no check.

The decisions above are runtime/methods/schedule.py's pure function; this module only feeds it what
happened on the PS and carries out what it decides (TensorFlow, the round's process).

The check is the method's own signal, measured on the live trajectory: on fixed validation images
from the training set (never the test set), the model the PS just got from a full push is compared
with the model the predictor assembles from that model's pushed group; the predictor passes when
its accuracy is within --switch-tolerance of the full model's. It needs no extra traffic (it uses
the refresh steps' full pushes) and it catches exactly what matters: predicted layers that make the
network worse than the trained ones would.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from helpers.npzio import under
from models import Model
from models.evaluate import predicted_labels
from runtime.methods import schedule
from runtime.methods.mp2_options import MP2Options
from runtime.methods.rounds import GraphRounds, RoundResult, Rounds, StageRounds


class OnlineController:
    """The PS-side shell of online MP²: turns what happens on the PS into schedule events, and carries out
    the pure decision function's actions (runtime/methods/schedule.py) with TensorFlow and a process."""

    def __init__(self, model: Model, dataset, run_dir: Path, options: MP2Options, data_flags: list[str], seed: int,
                 steps_per_epoch: int, max_wait: float, log=print, resuming: bool = False) -> None:
        from predictor.stage.training import split_images

        self.model, self.settings, self.log, self.seed = model, options, log, seed
        self.dir = Path(run_dir) / "online"
        self.snapshots = self.dir / "snapshots"
        self.dataset_name = dataset.name
        loss_pool, validation = split_images(len(dataset.train_y), min(5000, len(dataset.train_y) // 10))
        check = validation[: options.check_images]
        self.check_x, self.check_y = dataset.train_x[check], dataset.train_y[check]
        self.steps_per_epoch, self.max_wait = steps_per_epoch, max_wait
        self.state = schedule.initial(options)
        self.events: list[dict] = []
        self.stalled_seconds = 0.0
        self.reference: float | None = None  # check accuracy of the last fully pushed model (self.last_full)
        self.training_seconds = 0.0
        self.pushed_groups: list[np.ndarray] = []  # every snapshot's pushed group: what a graph round trains on
        self.resuming = resuming
        self._finished = None  # a round's result taken at a checkpoint, for the step that would have polled it
        self._seconds, self._weights = 0.0, None  # the last finished round's, for its judgement
        self._copy_after: int | None = None  # the step after which the promoted candidate is copied into live
        self.init_path = None  # the warm start: checked once at the first snapshot, then the rounds' --init
        self.init_weights = None
        if options.predictor_init:
            from predictor import load_checkpoint, resolve_path

            self.init_path = resolve_path(options.predictor_init)  # CheckpointError: one line, from mp2_ps.py
            from predictor.structure import infer_dense_rank, infer_head_rank

            self.init_weights = load_checkpoint(self.init_path, model.layout)[0]
            rank = infer_head_rank(self.init_weights)
            if rank != 1:
                raise ValueError(f"--predictor-init {self.init_path} has decoder heads of rank {rank}; online MP² "
                                 f"trains the reference's rank-one heads: pass a rank-one predictor")
            dense = infer_dense_rank(self.init_weights)
            if dense != options.online_dense_rank:
                raise ValueError(f"--predictor-init {self.init_path} has " + (
                    f"dense heads of rank {dense}" if dense else "the reference's dense heads")
                    + f": pass --dense-rank {dense or 0} (to the PS and every worker) to train it on")
        self.rounds: Rounds
        if options.online_rounds == "graph":
            self.rounds = GraphRounds(model, dataset.train_x, dataset.train_y, loss_pool, seed=seed,
                                      first_steps=options.first_round_steps, steps=options.round_steps,
                                      init=self.init_weights, dense_rank=options.online_dense_rank)
        else:
            self.rounds = StageRounds(model, self.dir, self.snapshots, data_flags=data_flags, seed=seed,
                                      stage_flags=options.stage_flags(len(dataset.train_y)), init_path=self.init_path)

    # --- graph (built by the MP² method on the PS) -------------------------------------------------
    def build(self, live, device: str, adjust=None) -> None:
        """`live` is the predictor the PS's steps use; a candidate of the same shape takes each new round.
        `adjust` (flat model -> flat model) is what the PS's steps do to a prediction (MP²'s correction), so
        the check and the judgements see the model the workers would get.

        A round is checked as the candidate and promoted into `live` only at a step boundary the
        workers are told about, so with --broadcast subset they switch weights on the same step.
        """
        import paramset
        from predictor import Predictor

        # Only now: OUT/online is a record of the run, which the PS refuses to overwrite before it builds.
        # A resumed run keeps the snapshots up to its checkpoint (`restore`); a fresh one in the same --out
        # (after --fresh set the records aside) drops what an earlier attempt left.
        if not self.resuming:
            paramset.clear(self.snapshots)
        self.writer = paramset.ParamSetWriter(self.snapshots, self.model.layout, self.dataset_name)
        layout = self.model.layout
        with tf.device(device):
            self.candidate = Predictor(layout, seed=self.seed, dense_rank=self.settings.online_dense_rank)
            self.vector = tf.compat.v1.placeholder(tf.float32, [layout.total], name="online_check_model")
            self.images = tf.compat.v1.placeholder(tf.float32, [None, *self.model.input_shape], name="online_check_images")
            pushed = layout.split(self.vector)[0]
            predict = lambda vector: predicted_labels(self.model, vector, self.images)  # noqa: E731
            self.pred_full = predict(self.vector)
            adjust = adjust or (lambda full: full)
            self.pred_live, self.pred_candidate = predict(adjust(live(pushed))), predict(adjust(self.candidate(pushed)))
            # Loading a round's weights feeds these placeholders: nothing is added to the graph later.
            self._feeds = {name: tf.compat.v1.placeholder(tf.float32, v.shape) for name, v in self.candidate.weight_vars.items()}
            self._load = tf.group(*[v.assign(self._feeds[name]) for name, v in self.candidate.weight_vars.items()])
            self._copy = tf.group(*[live.weight_vars[name].assign(v) for name, v in self.candidate.weight_vars.items()])
            self._live = live
            self._load_live = tf.group(*[live.weight_vars[name].assign(self._feeds[name]) for name in self._feeds])
        if isinstance(self.rounds, GraphRounds):
            self.rounds.build(lambda: self._session, device)

    # --- the schedule interface (schedule.Schedule) ----------------------------------------------------
    @property
    def version(self) -> int:
        return self.state.promotions

    def wants_full(self, step: int) -> bool:
        return schedule.wants_full(self.state, step, self.settings)

    def full_reason(self, step: int) -> str:
        return schedule.full_reason(self.state, step, self.settings)

    def after_step(self, session: tf.compat.v1.Session, step: int, full: bool, vector_of) -> None:
        """The step's events, in order: the step itself, the round's turn (Tick), the step's end."""
        if self._copy_after == step:  # promoted at the previous step's end, announced for the next step
            session.run(self._copy)
            self._copy_after = None
        self._session, self._vector_of = session, vector_of
        for event in (schedule.FullStepDone(step) if full else schedule.PartialStepDone(step),
                      schedule.Tick(step), schedule.StepEnd(step)):
            self._handle(event)

    def take_events(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    def never_switched_because(self) -> str:
        return schedule.never_switched_because(self.state, len(self.writer), self.settings)

    def _handle(self, event: schedule.Event) -> None:
        """Feed `event` to the decision function and carry out its actions (which may feed events back)."""
        self.state, actions = schedule.decide(self.state, event, self.settings)
        for action in actions:
            follow = self._execute(action)
            if follow is not None:
                self._handle(follow)

    def _execute(self, a: schedule.Action) -> schedule.Event | None:
        session, vector_of = self._session, self._vector_of
        if isinstance(a, schedule.TakeSnapshot):
            vector = self.latest = vector_of()
            self.pushed_groups.append(self.model.layout.split(vector)[0])
            if a.phase == "full":
                self.last_full = vector
                [self.reference] = self._accuracies(session, vector, self.pred_full)
                self.writer.add(vector, step=a.step + 1, epoch=a.step // self.steps_per_epoch + 1)
            else:
                self.writer.add(vector, step=a.step + 1, epoch=a.step // self.steps_per_epoch + 1, phase="partial")
            self.writer.flush()
        elif isinstance(a, schedule.CheckLive):  # the live predictor against the full push just snapshotted
            [assembled] = self._accuracies(session, self.last_full, self.pred_live)
            return schedule.LiveChecked(a.step, self.reference, assembled)
        elif isinstance(a, schedule.Watch):  # the live model: a drop below the last full push means the predictor lags
            [live] = self._accuracies(session, vector_of(), self.pred_full)
            return schedule.Watched(a.step, self.reference, live)
        elif isinstance(a, schedule.CheckInit):
            weights, self.init_weights = self.init_weights, None
            assembled = self._judge(session, weights)
            return schedule.CandidateJudged(a.step, 0, self.reference, assembled, extra=(("path", self.init_path),))
        elif isinstance(a, schedule.StartRound):
            how = self.rounds.start(a.step, a.round, list(self.pushed_groups))
            polled = schedule.polled_from(self.state, self.settings)
            if polled > a.step:  # with --online-wait the barrier waits there if the round is late
                when = (f"beside the training, taken at step {polled + 1}" if self.settings.online_wait
                        else f"beside the training, taken when done from step {polled + 1} on")
            else:
                when = "the step barrier waits" if self.settings.online_wait else "beside the training"
            self.log(f"online: step {a.step + 1}: training predictor {a.round} from {len(self.pushed_groups)} snapshots "
                     f"({how}; {when})")
        elif isinstance(a, schedule.PollRound):
            return self._poll(a.step)
        elif isinstance(a, schedule.JudgeCandidate):
            assembled = self._judge(session, self._weights)
            live = candidate = None
            if a.against_live:
                live, candidate = self._accuracies(session, self.latest, self.pred_live, self.pred_candidate)
            return schedule.CandidateJudged(a.step, a.round, self.reference, assembled, live, candidate,
                                            extra=(("seconds", round(self._seconds, 2)), ("snapshots", len(self.writer))))
        elif isinstance(a, schedule.Accept):
            if a.round > 0:  # round 0 is the warm start, where the rounds begin anyway
                self.rounds.accept()
        elif isinstance(a, schedule.Promote):
            self._copy_after = a.step + 1
        elif isinstance(a, schedule.Record):
            self.events.append(a.event)
            self.log(a.message)
        return None

    # --- the rounds ---------------------------------------------------------------------------------
    def _poll(self, step: int) -> schedule.Event | None:
        """The round: finished (an event), or still training (None). With --online-wait the barrier waits,
        but answers within the workers' deadline: at most half the step timeout per step; a longer round
        goes on over the next steps' waits."""
        t0 = time.monotonic()
        result, self._finished = self._finished or self.rounds.poll(self.max_wait if self.settings.online_wait else None), None
        if self.settings.online_wait:
            self.stalled_seconds += time.monotonic() - t0
        if result is None:
            return None
        self.training_seconds += result.seconds
        self._seconds, self._weights = result.seconds, result.weights
        return schedule.RoundFinished(step, self.state.rounds, result.ok, result.why)

    # --- resume ---------------------------------------------------------------------------------------
    def checkpoint(self, session: tf.compat.v1.Session) -> tuple[dict[str, np.ndarray], dict]:
        """Everything a resumed run needs to go on as this one would: the decisions' state, the live and
        candidate predictors, the rounds' state, a round in flight (waited for: its result is kept for the
        step that would have taken it) and the reference models. The snapshots are on disk already."""
        while self.state.training and self._finished is None:
            self._finished = self.rounds.poll(60.0)
        arrays = {f"live/{k}": v for k, v in session.run(self._live.weight_vars).items()}
        arrays.update({f"candidate/{k}": v for k, v in session.run(self.candidate.weight_vars).items()})
        for name in ("last_full", "latest"):
            if hasattr(self, name):
                arrays[name] = getattr(self, name)
        rounds_arrays, rounds_meta = self.rounds.checkpoint(session)
        arrays.update({f"rounds/{k}": v for k, v in rounds_arrays.items()})
        finished = None
        if self._finished is not None:
            r = self._finished
            finished = {"ok": r.ok, "seconds": r.seconds, "why": r.why}
            arrays.update({f"finished/{k}": v for k, v in (r.weights or {}).items()})
        meta = {"state": dataclasses.asdict(self.state), "reference": self.reference, "copy_after": self._copy_after,
                "stalled_seconds": self.stalled_seconds, "training_seconds": self.training_seconds,
                "snapshots": len(self.writer), "rounds": rounds_meta, "finished": finished}
        return {f"online/{k}": v for k, v in arrays.items()}, meta

    def restore(self, session: tf.compat.v1.Session, arrays: dict[str, np.ndarray], meta: dict, step: int) -> None:
        import paramset

        arrays = under(arrays, "online/")
        self.state = schedule.State(**meta["state"])
        self.reference, self._copy_after = meta["reference"], meta["copy_after"]
        self.stalled_seconds, self.training_seconds = meta["stalled_seconds"], meta["training_seconds"]
        for load, weights in ((self._load_live, under(arrays, "live/")), (self._load, under(arrays, "candidate/"))):
            session.run(load, {self._feeds[k]: weights[k] for k in self._feeds})
        for name in ("last_full", "latest"):
            if name in arrays:
                setattr(self, name, arrays[name])
        self.writer.keep_through_step(step)
        if len(self.writer) != meta["snapshots"]:
            raise ValueError(f"{self.snapshots} holds {len(self.writer)} snapshots up to step {step}, the checkpoint "
                             f"counted {meta['snapshots']}: the online snapshots were changed; start afresh")
        self.pushed_groups = paramset.pushed_groups(self.snapshots, self.model.layout)
        self.rounds.restore(session, under(arrays, "rounds/"), meta["rounds"])
        if meta["finished"] is not None:
            self._finished = RoundResult(**meta["finished"], weights=under(arrays, "finished/") or None)

    def _judge(self, session: tf.compat.v1.Session, weights: dict) -> float:
        """Load `weights` into the candidate: the accuracy of the model it assembles from the latest fully
        pushed model's pushed group, the trajectory's freshest ground truth."""
        session.run(self._load, {self._feeds[name]: weights[name] for name in self._feeds})
        [assembled] = self._accuracies(session, self.last_full, self.pred_candidate)
        return assembled

    def _accuracies(self, session: tf.compat.v1.Session, vector: np.ndarray, *predictions) -> list[float]:
        """Accuracy on the check images of each prediction op (pred_full, pred_live, pred_candidate) at `vector`."""
        predicted = session.run(list(predictions), {self.vector: vector, self.images: self.check_x})
        return [float(np.mean(p == self.check_y)) for p in predicted]

    def stop(self) -> None:
        self.rounds.stop()

    def stats(self) -> dict:
        return {"online": {"predictor_init": self.init_path, "rounds": self.state.rounds,
                           "training_seconds": round(self.training_seconds, 2),
                           "stalled_seconds": round(self.stalled_seconds, 2), "snapshots": len(self.writer)}}
