"""Where online MP²'s predictors come from: its training rounds, behind one interface.

    GraphRounds   (--online-rounds graph, the default) in the PS's own process and graph. A trainee
                  predictor and its Adam state live beside the live one; a round continues training the
                  trainee for a bounded number of optimizer steps (--first-round-steps, then
                  --round-steps) on the snapshots taken so far, in a thread of the PS. Nothing is
                  started, imported or read from disk, so a round costs its optimizer steps and no more.
    StageRounds   (--online-rounds stage) one mp2_train_stage.py process per round: epochs over every
                  snapshot, keeping the epoch that does best on held-out ones (--online-stage-flags),
                  from the last predictor that passed. The first design; it retrains from the whole
                  history each time, so a round costs more the longer the run.

Both are deterministic: a round's result depends only on the snapshots it was started with, its seed and
the predictor it starts from. When it lands depends on the machine's load, unless the barrier waits for
it (--online-wait): then it lands on the same step under any load.

The controller (runtime/methods/online.py) asks: start a round, poll it (waiting up to some seconds),
accept its predictor as what the next round continues from, stop.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf

from helpers.npzio import under
from helpers.optim import Adam
from models import Model

ROOT = Path(__file__).resolve().parents[2]
# The first round: 1,500 steps at 4e-3 kept online MP² within half a point of the baseline in every seed, in
# a quarter of the time of 6,000 at 1e-3 (0.3 points above it on the mean; results/online-rounds). Later rounds
# fine-tune: at 1e-3, 300 more steps left the predictor worse on the freshest snapshot than it started (Adam's
# steps are about the rate in size); 1e-4 improved it every round.
FIRST_LR, LATER_LR = 4e-3, 1e-4
RECENT_SHARE = 0.5  # of a later round's steps, on the snapshots taken since the round before
ROUND_IMAGE_BATCH = 64  # images per optimizer step of a graph round: the cost of a step is mostly the predictor's
# Optimizer steps per session call (a loop in the graph): one call per step cost LeNet-5's rounds about a
# third of their time in feeding and dispatch (4.6 ms a step against 3.0 in calls of 50).
STEPS_PER_CALL = 50


@dataclass
class RoundResult:
    ok: bool
    seconds: float
    weights: dict[str, np.ndarray] | None = None
    why: str = ""


class Rounds(Protocol):
    def start(self, step: int, number: int, pushed_groups: list[np.ndarray]) -> str: ...

    def poll(self, wait: float | None) -> RoundResult | None: ...

    def accept(self) -> None: ...

    def stop(self) -> None: ...

    def checkpoint(self, session) -> tuple[dict[str, np.ndarray], dict]: ...

    def restore(self, session, arrays: dict[str, np.ndarray], meta: dict) -> None: ...


class GraphRounds:
    """Rounds in the PS's graph: incremental training of a trainee predictor, one round at a time.

    A round that passes its check is accepted: the next round continues from it (weights and Adam
    moments). A round that fails or is not taken is forgotten: the next starts again from the last
    accepted state, or from the start (the warm start's predictor, or a fresh one) if none was.
    Each optimizer step takes one snapshot (of those the round was started with: uniformly, but in later
    rounds half the steps from the snapshots the accepted predictor never saw) and
    ROUND_IMAGE_BATCH loss images (the training images outside the check's validation images), and
    back-propagates the cross-entropy of the network assembled from the snapshot's pushed group and
    the trainee's prediction: the method's result loss.
    """

    def __init__(self, model: Model, images: np.ndarray, labels: np.ndarray, pool: np.ndarray, *, first_steps: int,
                 steps: int, seed: int, lr: float = FIRST_LR, later_lr: float = LATER_LR,
                 init: dict[str, np.ndarray] | None = None, dense_rank: int | None = None) -> None:
        """images, labels: the training set; pool: the indices of the images the loss may use; dense_rank:
        the predictor's, which init's weights must have."""
        self.model, self.images, self.labels, self.pool = model, images, labels, np.asarray(pool)
        self.first_steps, self.steps, self.seed, self.lr, self.init = first_steps, steps, seed, lr, init
        self.later_lr, self.dense_rank = later_lr, dense_rank
        self._thread: threading.Thread | None = None
        self._result: RoundResult | None = None
        self._accepted: dict[str, np.ndarray] | None = None  # trainee + Adam state of the last accepted round
        self._clean = True  # the trainee holds the state the next round starts from
        self._trained_on = 0  # snapshots there were when the accepted round started (0: none accepted)
        self._started_with = 0  # snapshots there were when the last round started

    def build(self, session_of, device: str) -> None:
        """The trainee, its Adam and the training step, on the PS's device. `session_of()` gives the session."""
        from predictor import Predictor

        layout = self.model.layout
        self.session_of = session_of
        with tf.device(device):
            # A warm start's weights must have this rank too (the Predictor refuses a contradiction).
            self.trainee = Predictor(layout, weights=self.init, seed=self.seed, dense_rank=self.dense_rank)
            self._lr = tf.compat.v1.placeholder(tf.float32, [], name="round_lr")  # the first round's, or the later rounds'
            # A warm start's weights meet fresh Adam moments: the first round's rate rises over its steps
            # (as mp2_train_stage.py --init does), or its first steps undo much of what was given.
            self.adam = Adam(self.trainee.weight_vars, self._lr, warmup_steps=self.first_steps if self.init else 0)
            # A call's steps: [steps, P] pushed groups, [steps, batch, ...] images, [steps, batch] labels.
            self._pushed = tf.compat.v1.placeholder(tf.float32, [None, layout.pushed], name="round_pushed")
            self._images = tf.compat.v1.placeholder(tf.float32, [None, None, *self.model.input_shape],
                                                    name="round_images")
            self._labels = tf.compat.v1.placeholder(tf.int32, [None, None], name="round_labels")
            self._train = tf.function(self._steps)(self._pushed, self._images, self._labels)
            self._state_vars = {**{f"w/{k}": v for k, v in self.trainee.weight_vars.items()},
                                **{f"adam/m/{n}": m for n, m in zip(self.adam.names, self.adam.m)},
                                **{f"adam/v/{n}": v for n, v in zip(self.adam.names, self.adam.v)},
                                "adam/t": self.adam.t}
            self._feeds = {k: tf.compat.v1.placeholder(v.dtype, v.shape) for k, v in self._state_vars.items()}
            self._load = tf.group(*[v.assign(self._feeds[k]) for k, v in self._state_vars.items()])

    def _steps(self, pushed, images, labels):
        """One optimizer step per row of the inputs, in order; their losses."""
        losses = tf.TensorArray(tf.float32, size=tf.shape(pushed)[0])
        for i in tf.range(tf.shape(pushed)[0]):
            losses = losses.write(i, self._step(pushed[i], images[i], labels[i]))
        return losses.stack()

    def _step(self, pushed, images, labels):
        with tf.GradientTape() as tape:
            params = self.trainee.predict_params(pushed)
            logits = self.model.forward(params, images)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        self.adam.apply(tape.gradient(loss, self.adam.vars))
        return loss

    def start(self, step: int, number: int, pushed_groups: list[np.ndarray]) -> str:
        session = self.session_of()
        if self._accepted is None:  # the start: what a round follows when no earlier round was taken
            self._accepted = self._read_state(session)
        elif not self._clean:  # the last round was not taken: back to the last accepted state
            session.run(self._load, {self._feeds[k]: v for k, v in self._accepted.items()})
        self._clean = False
        steps = self.first_steps if number == 1 else self.steps
        rate = self.lr if number == 1 else self.later_lr
        # Drawn now, from the seed and the round's number alone: a round's inputs do not depend on the
        # rounds before it, so a resumed run or a round after a rejected one draws what it would have.
        rng = np.random.default_rng([self.seed, number])
        rows = rng.integers(0, len(pushed_groups), steps)
        if 0 < self._trained_on < len(pushed_groups):
            # Half the steps on the snapshots the accepted predictor never saw: the trajectory has moved
            # on, and a round is judged on the freshest snapshot.
            fresh = rng.random(steps) < RECENT_SHARE
            rows[fresh] = rng.integers(self._trained_on, len(pushed_groups), int(fresh.sum()))
        self._started_with = len(pushed_groups)
        batches = self.pool[rng.integers(0, len(self.pool), (steps, ROUND_IMAGE_BATCH))]
        groups = [pushed_groups[r] for r in rows]
        self._result, started = None, time.monotonic()

        def train() -> None:
            try:
                for a in range(0, steps, STEPS_PER_CALL):
                    call = slice(a, a + STEPS_PER_CALL)
                    losses = session.run(self._train, {
                        self._pushed: np.stack(groups[call]), self._images: self.images[batches[call]],
                        self._labels: self.labels[batches[call]], self._lr: rate})
                    if not np.all(np.isfinite(losses)):
                        raise FloatingPointError(f"the round's loss became {losses[~np.isfinite(losses)][0]}")
                weights = session.run(self.trainee.weight_vars)
                self._result = RoundResult(True, time.monotonic() - started, weights)
            except (tf.errors.OpError, FloatingPointError) as e:
                self._result = RoundResult(False, time.monotonic() - started, why=f"failed: {str(e).splitlines()[0]}")

        self._thread = threading.Thread(target=train, name=f"mp2-round-{number}", daemon=True)
        self._thread.start()
        return f"{steps} optimizer steps in the PS"

    def _read_state(self, session) -> dict[str, np.ndarray]:
        return session.run(self._state_vars)

    def poll(self, wait: float | None) -> RoundResult | None:
        if self._thread is None:
            return None
        self._thread.join(timeout=wait if wait is not None else 0)
        if self._thread.is_alive():
            return None
        self._thread = None
        return self._result

    def accept(self) -> None:
        self._accepted = self._read_state(self.session_of())
        self._trained_on, self._clean = self._started_with, True

    def stop(self) -> None:
        """A running round finishes its current call (at most STEPS_PER_CALL steps) and is dropped with the
        process (the thread is a daemon)."""

    def checkpoint(self, session) -> tuple[dict[str, np.ndarray], dict]:
        """The trainee's state and the last accepted one (no round runs: the controller waited for it)."""
        arrays = {f"trainee/{k}": v for k, v in self._read_state(session).items()}
        arrays.update({f"accepted/{k}": v for k, v in (self._accepted or {}).items()})
        return arrays, {"trained_on": self._trained_on, "started_with": self._started_with, "clean": self._clean,
                        "accepted": self._accepted is not None}

    def restore(self, session, arrays: dict[str, np.ndarray], meta: dict) -> None:
        trainee = under(arrays, "trainee/")
        session.run(self._load, {self._feeds[k]: trainee[k] for k in self._feeds})
        self._accepted = under(arrays, "accepted/") if meta["accepted"] else None
        self._trained_on, self._started_with, self._clean = meta["trained_on"], meta["started_with"], meta["clean"]


class StageRounds:
    """Rounds as mp2_train_stage.py processes over the snapshot directory, each from the last that passed."""

    def __init__(self, model: Model, directory: Path, snapshots: Path, *, data_flags: list[str], stage_flags: list[str],
                 seed: int, init_path: str | None) -> None:
        self.model, self.dir, self.snapshots = model, directory, snapshots
        self.data_flags, self.stage_flags, self.seed = data_flags, stage_flags, seed
        self.start_from = init_path  # what the next round's training starts from (None: fresh)
        self.trainer: subprocess.Popen | None = None

    def start(self, step: int, number: int, pushed_groups: list[np.ndarray]) -> str:
        out = self._out = self.dir / f"predictor-{number}"
        if out.exists():  # an earlier attempt of this run (its snapshots were dropped too): the stage refuses it
            shutil.rmtree(out)
        cmd = [sys.executable, str(ROOT / "mp2_train_stage.py"), "--model", self.model.spec or self.model.name,
               "--push", ",".join(self.model.layout.pushed_layers()), *self.data_flags,
               "--snapshots", str(self.snapshots), "--out", str(out), "--seed", str(self.seed),
               "--threads", "1", *self.stage_flags]
        if self.start_from is not None:
            cmd += ["--init", self.start_from]
        self.log_path = self.dir / f"predictor-{number}.log"
        with open(self.log_path, "w") as log:
            self.trainer = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        self._started = time.monotonic()
        return f"mp2_train_stage.py, log {self.log_path}"

    def poll(self, wait: float | None) -> RoundResult | None:
        from predictor import CheckpointError, load_checkpoint

        if self.trainer is None:
            return None
        if wait:
            try:
                self.trainer.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        if self.trainer.poll() is None:
            return None
        code, self.trainer = self.trainer.returncode, None
        seconds, path = time.monotonic() - self._started, self._out / "predictor.npz"
        if code != 0 or not path.exists():
            return RoundResult(False, seconds, why=f"failed (exit {code}); see {self.log_path}")
        try:
            weights, _ = load_checkpoint(str(path), self.model.layout)
        except CheckpointError as e:
            return RoundResult(False, seconds, why=f"unusable ({e})")
        return RoundResult(True, seconds, weights)

    def accept(self) -> None:
        self.start_from = str(self._out / "predictor.npz")

    def stop(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:
            self.trainer.terminate()

    def checkpoint(self, session) -> tuple[dict[str, np.ndarray], dict]:
        return {}, {"start_from": self.start_from, "out": str(getattr(self, "_out", "")) or None}

    def restore(self, session, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.start_from = meta["start_from"]
        if meta["out"]:
            self._out = Path(meta["out"])
