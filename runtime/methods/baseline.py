"""Baseline: every worker trains every layer with local Adam and pushes all of it; the PS averages."""
from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, mean

if TYPE_CHECKING:
    import tensorflow as tf


class Baseline(Method):
    shardable = True
    name = "baseline"
    summary = "every worker pushes the whole model; the PS averages and sends the average back"

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        return {0: full_push_worker(w)}

    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        return {0: average_ps(ps)}


def full_push_worker(w: WorkerSide, train: tf.Operation | None = None) -> WorkerPhase:
    """Train every layer (with `train`, by default one local Adam step on all of them), send them all,
    and take the model that comes back."""
    import tensorflow as tf

    if train is None:
        train = w.adam(w.local.variables())
    with tf.control_dependencies([train]):
        up = [w.local.vector()]
    return WorkerPhase(up=up, apply=lambda reply: w.local.assign(reply[0]))


def average_ps(ps: PSSide) -> PSPhase:
    """The mean of the pushed models becomes the global model, which is the reply."""
    import tensorflow as tf

    average = mean([p[0] for p in ps.gather()])
    with tf.control_dependencies([ps.model.assign(average)]):
        return PSPhase(reply=[tf.identity(average)])
