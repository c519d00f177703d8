"""MP²: workers train and push the pushed group; the PS predicts the rest from their average.

Phases: FULL (every layer trained and pushed, as the baseline) and PARTIAL (only the pushed group).
`--full-push-epochs K` makes the last K epochs FULL. `--prediction hold` is the control run that
shows what the predictor adds: the same schedule, with the predicted group held at its last fully
pushed value instead of predicted.
"""
from __future__ import annotations

import argparse
import hashlib

import tensorflow as tf

import argtypes
from models import PUSHED
from runtime.methods.base import Method, Option, PSPhase, PSSide, WorkerPhase, WorkerSide, mean
from runtime.methods.baseline import average_ps, full_push_worker

FULL, PARTIAL = 0, 1


class MP2(Method):
    name = "mp2"
    summary = "workers push the pushed group (--push); the PS predicts the rest and sends the model"
    options = (
        Option("--predictor", str, None, "predictor checkpoint (.npz, or the directory of mp2_train_stage.py's "
               "output)", ps_only=True),
        Option("--prediction", str, "predictor", "predictor: the trained predictor fills the predicted group; "
               "hold: the control run, which keeps it at its last fully pushed value"),
        Option("--full-push-epochs", argtypes.nonnegative_int, 0, "the last K epochs push the whole model"),
    )

    phase_names = {FULL: "full", PARTIAL: "partial"}

    def prepare_ps(self, args: argparse.Namespace) -> None:
        if self.opts["prediction"] not in ("predictor", "hold"):
            raise ValueError(f"--prediction must be predictor or hold, got {self.opts['prediction']!r}")
        self.weights = None
        if self.opts["prediction"] == "predictor":
            from predictor import load_checkpoint, resolve_path

            if not self.opts.get("predictor"):
                raise ValueError("--method mp2 needs --predictor PATH (a checkpoint from mp2_train_stage.py), "
                                 "or --prediction hold for the control run")
            self.path = resolve_path(self.opts["predictor"])
            self.weights, _ = load_checkpoint(self.path, self.layout)

    def ps_inputs(self) -> dict:
        if self.weights is None:
            return {}
        with open(self.path, "rb") as f:
            return {"predictor": self.path, "predictor_sha256": hashlib.sha256(f.read()).hexdigest()}

    # --- schedule -------------------------------------------------------------------------------
    def next_phase(self, step: int) -> int:
        epoch = step // self.run.steps_per_epoch
        if epoch >= self.run.epochs - self.opts["full_push_epochs"]:
            return FULL
        return PARTIAL

    # --- worker ---------------------------------------------------------------------------------
    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        train = w.adam(w.local.variables(PUSHED))
        with tf.control_dependencies([train]):
            up = [w.local.vector(PUSHED)]
        partial = WorkerPhase(up=up, apply=lambda reply: w.local.assign(reply[0]))
        return {FULL: full_push_worker(w), PARTIAL: partial}

    # --- PS -------------------------------------------------------------------------------------
    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        average = tf.reshape(mean([p[0] for p in ps.gather()]), [self.layout.pushed])  # a static shape
        if self.weights is not None:
            from predictor import Predictor

            with tf.device(ps.device):
                self.predictor = Predictor(self.layout, weights=self.weights)
            full = self.predictor(average)
        else:  # the control: the predicted group stays where the last full push left it
            full = self.layout.join(average, self.layout.split(ps.model)[1])
        with tf.control_dependencies([ps.model.assign(full)]):
            partial = PSPhase(reply=[tf.identity(full)])
        return {FULL: average_ps(ps), PARTIAL: partial}
