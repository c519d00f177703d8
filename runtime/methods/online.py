"""Online MP²: no predictor file, no prior run — the PS learns the predictor while the model trains.

    warm-up   FULL steps (the baseline) while the PS snapshots the model every --online-snapshot-every
              steps into OUT/online/snapshots
    train     once --warmup-snapshots are in, mp2_train_stage.py trains a predictor from them in a
              separate process (beside the training; with --online-wait the PS holds the step
              barrier until it is done, and the stall is measured)
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

The check is the method's own signal, measured on the live trajectory: on fixed validation images
from the training set (never the test set), the model the PS just got from a full push is compared
with the model the predictor assembles from that model's pushed group; the predictor passes when
its accuracy is within --switch-tolerance of the full model's. It needs no extra traffic (it uses
the refresh steps' full pushes) and it catches exactly what matters: predicted layers that make the
network worse than the trained ones would.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from models import Model
from stage.flags import check_round_flags

ROOT = Path(__file__).resolve().parents[2]


def check_online_options(opts: dict) -> None:
    """The PS-only online flags that only make sense together (ValueError: one line for the user)."""
    if opts.get("predictor_init") and (opts.get("predictor") or opts["prediction"] == "hold"):
        raise ValueError("--predictor-init is online MP²'s warm start: drop --predictor (a fixed predictor "
                         "needs no start) and --prediction hold (the control has no predictor)")
    if opts.get("control_switch_step") is not None and opts["prediction"] != "hold":
        raise ValueError("--control-switch-step gives the control (--prediction hold) online MP²'s schedule: "
                         "add --prediction hold, or drop it")
    try:
        round_flags = shlex.split(opts["online_stage_flags"])
    except ValueError as e:  # an unclosed quote
        raise ValueError(f"--online-stage-flags: {e}") from None
    # Parsed as a round's mp2_train_stage.py would, now: a typo would otherwise fail every round, in its log only.
    check_round_flags(round_flags)


class OnlineController:
    """The PS-side state machine of online MP²: snapshots, background training, the check, the switch."""

    def __init__(self, model: Model, dataset, run_dir: Path, opts: dict, data_flags: list[str], seed: int,
                 steps_per_epoch: int, max_wait: float, log=print) -> None:
        from paramset import ParamSetWriter
        from stage.training import split_images

        self.model, self.opts, self.log, self.seed = model, opts, log, seed
        self.dir = Path(run_dir) / "online"
        self.snapshots = self.dir / "snapshots"
        if self.snapshots.exists():  # this run's own earlier attempt: its snapshots belong to another trajectory
            for f in self.snapshots.iterdir():
                f.unlink()
        self.writer = ParamSetWriter(self.snapshots, model.layout, dataset.name)
        self.data_flags = data_flags
        validation = split_images(len(dataset.train_y), min(5000, len(dataset.train_y) // 10))[1]
        check = validation[: opts["check_images"]]
        self.check_x, self.check_y = dataset.train_x[check], dataset.train_y[check]
        self.steps_per_epoch, self.max_wait = steps_per_epoch, max_wait
        self.ready = False          # a predictor has passed the check and is loaded
        self.falling_back = False   # the last check failed: full pushes until a retrained predictor passes
        self.trainer: subprocess.Popen | None = None
        self.rounds, self.since_training, self.events = 0, 0, []
        self.stalled_seconds = 0.0
        self.reference: float | None = None  # check accuracy of the last fully pushed model (self.last_full)
        self.training_seconds = 0.0
        self._started = 0.0
        self.init_path = None  # the warm start: checked once at the first snapshot, then the rounds' --init
        self.init_weights = None
        if opts.get("predictor_init"):
            from predictor import load_checkpoint, resolve_path

            self.init_path = resolve_path(opts["predictor_init"])  # CheckpointError: one line, from mp2_ps.py
            from predictor.structure import infer_head_rank

            self.init_weights = load_checkpoint(self.init_path, model.layout)[0]
            rank = infer_head_rank(self.init_weights)
            if rank != 1:
                raise ValueError(f"--predictor-init {self.init_path} has decoder heads of rank {rank}; online MP² "
                                 f"trains the reference's rank-one heads: pass a rank-one predictor")
        self.start_from = self.init_path  # what the next round's training starts from (None: fresh)

    # --- graph (built by the MP² method on the PS) -------------------------------------------------
    def build(self, live, device: str) -> None:
        """`live` is the predictor the PS's steps use; a candidate of the same shape takes each new round.

        A round is checked as the candidate and promoted into `live` only at a step boundary the
        workers are told about, so with --broadcast subset they switch weights on the same step.
        """
        from predictor import Predictor

        layout = self.model.layout
        with tf.device(device):
            self.candidate = Predictor(layout, seed=self.seed)
            self.vector = tf.compat.v1.placeholder(tf.float32, [layout.total], name="online_check_model")
            self.images = tf.compat.v1.placeholder(tf.float32, [None, *self.model.input_shape], name="online_check_images")
            pushed = layout.split(self.vector)[0]
            predict = lambda params: tf.argmax(self.model.forward(layout.unflatten(params), self.images), 1)  # noqa: E731
            self.pred_full = predict(self.vector)
            self.pred_live, self.pred_candidate = predict(live(pushed)), predict(self.candidate(pushed))
            # Loading a round's weights feeds these placeholders: nothing is added to the graph later.
            self._feeds = {name: tf.compat.v1.placeholder(tf.float32, v.shape) for name, v in self.candidate.weight_vars.items()}
            self._load = tf.group(*[v.assign(self._feeds[name]) for name, v in self.candidate.weight_vars.items()])
            self._copy = tf.group(*[live.weight_vars[name].assign(v) for name, v in self.candidate.weight_vars.items()])
        self.pending = None

    def copy_candidate_to_live(self, session: tf.compat.v1.Session) -> None:
        session.run(self._copy)

    def promote(self) -> None:
        """Called at the step boundary where the passed candidate goes live."""
        switched = not self.ready or self.falling_back
        event, self.pending = self.pending, None
        self.ready, self.falling_back = True, False
        if switched:
            self.events.append({"step": event["step"], "event": "switch to mp2", "round": event["round"]})
            self.log(f"online: workers switch to MP² with predictor {event['round']}")

    # --- decisions -------------------------------------------------------------------------------
    def wants_full(self, step: int) -> bool:
        if not self.ready or self.falling_back:
            return True
        return step % self.opts["refresh_every"] < self.opts["refresh_steps"]

    def _window_end(self, step: int) -> bool:
        return step % self.opts["refresh_every"] == self.opts["refresh_steps"] - 1

    def after_full_step(self, session: tf.compat.v1.Session, step: int, vector_of) -> None:
        """After a FULL step: maybe snapshot, maybe check; then look after the trainer."""
        warming = not self.ready or self.falling_back
        snapshot = (step + 1) % self.opts["online_snapshot_every"] == 0 if warming else self._window_end(step)
        if snapshot:
            vector = self.last_full = self.latest = vector_of()
            [self.reference] = self._accuracies(session, vector, self.pred_full)
            self.writer.add(vector, step=step + 1, epoch=step // self.steps_per_epoch + 1)
            self.writer.flush()
            self.since_training += 1
            if self.ready and not self.falling_back:
                self._check(session, vector, step)
            elif self.init_weights is not None and self.trainer is None:
                self._check_init(session, step)

    def after_partial_step(self, session: tf.compat.v1.Session, step: int, vector_of) -> None:
        """Maybe snapshot (--partial-snapshot-every); watch the live model: a drop below the last fully
        pushed model's accuracy means the predictor lags."""
        every = self.opts.get("partial_snapshot_every") or 0
        if every and (step + 1) % every == 0:
            self.latest = vector_of()
            self.writer.add(self.latest, step=step + 1, epoch=step // self.steps_per_epoch + 1, phase="partial")
            self.writer.flush()
            self.since_training += 1
        if (step + 1) % self.opts["watch_every"] or self.reference is None:
            return
        [live] = self._accuracies(session, vector_of(), self.pred_full)
        if live < self.reference - self.opts["watch_tolerance"]:
            self._fall_back(step, self.reference, live, "the live model")

    def poll(self, session: tf.compat.v1.Session, step: int, vector_of) -> None:
        """Every step: start a training round when due, take its result when it is done."""
        if self.trainer is None:
            first = self.rounds == 0 and not self.ready  # a warm start that passed retrains as any later round
            due = self.opts["warmup_snapshots"] if first else self.opts["retrain_after"]
            if self.since_training >= due:
                self._start_training(step)
            return
        if self.opts["online_wait"]:
            # Hold the barrier, but answer within the workers' deadline: at most half the step timeout
            # per step; a longer training goes on over the next steps' waits.
            t0 = time.monotonic()
            try:
                self.trainer.wait(timeout=self.max_wait)
            except subprocess.TimeoutExpired:
                pass
            self.stalled_seconds += time.monotonic() - t0
        if self.trainer.poll() is None:
            return
        self._finish_training(session, step, vector_of)

    # --- the background trainer --------------------------------------------------------------------
    def _start_training(self, step: int) -> None:
        self.rounds += 1
        out = self.dir / f"predictor-{self.rounds}"
        if out.exists():  # an earlier attempt of this run (its snapshots were dropped too): the stage refuses it
            shutil.rmtree(out)
        cmd = [sys.executable, str(ROOT / "mp2_train_stage.py"), "--model", self.model.name,
               "--push", ",".join(self.model.layout.pushed_layers()), *self.data_flags,
               "--snapshots", str(self.snapshots), "--out", str(out), "--seed", str(self.seed),
               "--threads", "1", *shlex.split(self.opts["online_stage_flags"])]
        if self.start_from is not None:
            cmd += ["--init", self.start_from]
        self.log_path = self.dir / f"predictor-{self.rounds}.log"
        self.trainer = subprocess.Popen(cmd, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=ROOT,
                                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        self._started = time.monotonic()
        self.since_training = 0
        self._round_out = out
        self.log(f"online: step {step + 1}: training predictor {self.rounds} from {len(self.writer)} snapshots "
                 f"({'the step barrier waits' if self.opts['online_wait'] else 'beside the training'}); log {self.log_path}")

    def _finish_training(self, session: tf.compat.v1.Session, step: int, vector_of) -> None:
        from predictor import CheckpointError, load_checkpoint

        code, self.trainer = self.trainer.returncode, None
        seconds = time.monotonic() - self._started
        self.training_seconds += seconds
        path = self._round_out / "predictor.npz"
        if code != 0 or not path.exists():
            self.log(f"online: predictor {self.rounds} failed (exit {code}); see {self.log_path}; full pushes go on")
            self.events.append({"step": step + 1, "event": "training failed", "round": self.rounds})
            return
        try:
            weights, meta = load_checkpoint(str(path), self.model.layout)
        except CheckpointError as e:
            self.log(f"online: predictor {self.rounds} unusable ({e}); full pushes go on")
            return
        full, assembled, passed = self._check_candidate(session, weights)
        event = {"step": step + 1, "event": "trained", "round": self.rounds, "seconds": round(seconds, 2),
                 "snapshots": len(self.writer), "check_full_acc": full, "check_assembled_acc": assembled}
        if passed and self.ready and not self.falling_back:
            # A predictor is live: the round replaces it only if it assembles at least as good a model
            # from the freshest snapshot's pushed group (the last full push may be long past).
            event["latest_live_acc"], event["latest_candidate_acc"] = self._accuracies(
                session, self.latest, self.pred_live, self.pred_candidate)
            passed = event["latest_candidate_acc"] >= event["latest_live_acc"]
        event["passed"] = bool(passed)
        self.events.append(event)
        if passed:
            self.pending, self.start_from = event, str(path)
            self.log(f"online: step {step + 1}: predictor {self.rounds} ({seconds:.1f} s) passes the check "
                     f"(assembled {assembled:.4f} vs full {full:.4f})")
        else:
            if not self.ready or self.falling_back:
                going_on = "full pushes go on and collect more snapshots"
            elif "latest_live_acc" in event:
                going_on = (f"the live predictor stays: from the freshest snapshot it assembles "
                            f"{event['latest_live_acc']:.4f}, the round {event['latest_candidate_acc']:.4f}")
            else:
                going_on = "the previous predictor stays"
            self.log(f"online: step {step + 1}: predictor {self.rounds} is not taken (assembled {assembled:.4f} vs "
                     f"full {full:.4f}); {going_on}")

    def _check_init(self, session: tf.compat.v1.Session, step: int) -> None:
        """The warm start's one check, at the first snapshot: it goes live if it passes, as a round would."""
        weights, self.init_weights = self.init_weights, None
        full, assembled, passed = self._check_candidate(session, weights)
        event = {"step": step + 1, "event": "initial predictor checked", "round": 0, "path": self.init_path,
                 "check_full_acc": full, "check_assembled_acc": assembled, "passed": bool(passed)}
        self.events.append(event)
        if passed:
            self.pending = event
        self.log(f"online: step {step + 1}: the initial predictor {self.init_path} "
                 f"{'passes' if passed else 'fails'} the check (assembled {assembled:.4f} vs full {full:.4f})"
                 + ("" if passed else "; full pushes go on, and the rounds start from it"))

    def _check_candidate(self, session: tf.compat.v1.Session, weights: dict) -> tuple[float, float, bool]:
        """Load `weights` into the candidate and judge it on the latest fully pushed model, the trajectory's
        freshest ground truth: (that model's accuracy, the assembled one's, whether it passes)."""
        session.run(self._load, {self._feeds[name]: weights[name] for name in self._feeds})
        [assembled] = self._accuracies(session, self.last_full, self.pred_candidate)
        return self.reference, assembled, assembled >= self.reference - self.opts["switch_tolerance"]

    def _check(self, session: tf.compat.v1.Session, vector: np.ndarray, step: int) -> None:
        """The live predictor against the full push just snapshotted (`vector`, whose accuracy is the reference)."""
        [assembled] = self._accuracies(session, vector, self.pred_live)
        if assembled < self.reference - self.opts["switch_tolerance"]:
            self._fall_back(step, self.reference, assembled, "assembled")

    def _fall_back(self, step: int, full: float, got: float, what: str) -> None:
        if self.falling_back:
            return
        self.falling_back = True
        self.since_training = max(self.since_training, self.opts["retrain_after"] - 1)
        self.events.append({"step": step + 1, "event": "fallback to full pushes", "signal": what,
                            "check_full_acc": full, "check_got_acc": got})
        self.log(f"online: step {step + 1}: the predictor lags ({what} {got:.4f} vs fully pushed {full:.4f}); "
                 f"full pushes until a retrained predictor passes")

    def _accuracies(self, session: tf.compat.v1.Session, vector: np.ndarray, *predictions) -> list[float]:
        """Accuracy on the check images of each prediction op (pred_full, pred_live, pred_candidate) at `vector`."""
        predicted = session.run(list(predictions), {self.vector: vector, self.images: self.check_x})
        return [float(np.mean(p == self.check_y)) for p in predicted]

    def stop(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:
            self.trainer.terminate()

    def stats(self) -> dict:
        return {"online": {"predictor_init": self.init_path, "rounds": self.rounds, "training_seconds": round(self.training_seconds, 2),
                           "stalled_seconds": round(self.stalled_seconds, 2), "snapshots": len(self.writer),
                           "events": self.events}}


class HeldSchedule:
    """The control's half of online MP²'s schedule: full pushes through step `switch_step` + 1 (0-based;
    the MP² run's switch event names the step whose check decided, and the next step's phase was announced
    already), then a window of --refresh-steps full pushes every --refresh-every steps, as after its switch."""

    def __init__(self, opts: dict, switch_step: int) -> None:
        self.opts, self.switch_step = opts, switch_step
        self.pending, self.events = None, []

    def wants_full(self, step: int) -> bool:
        return step <= self.switch_step or step % self.opts["refresh_every"] < self.opts["refresh_steps"]

    def after_full_step(self, *_) -> None:
        pass

    after_partial_step = poll = after_full_step

    def stop(self) -> None:
        pass

    def stats(self) -> dict:
        return {"online": {"control_switch_step": self.switch_step, "events": self.events}}
