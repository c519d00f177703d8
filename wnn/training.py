"""Training the three nowcasters on trajectories of ordinary training (a parameter dataset).

A trajectory is the snapshots of one collecting run in step order, recorded at regular steps.
A training example is, for one scalar weight, HISTORY snapshots `spacing` apart ending at snapshot
t, and its value at snapshot t + horizon * spacing. The held-out examples come from a contiguous
later stretch of each trajectory (its last `holdout` share of snapshots), so nothing they touch was
trained on. The loss is the reference's: mean absolute error of the normalised change, plus its L1
penalty; targets are clipped to [-1, 1], the range of the network's tanh.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from helpers.optim import Adam
from models import Layout
from models.evaluate import VectorAccuracy
from paramset import Snapshots
from wnn import features, network

TARGET_CLIP = 1.0


class WnnError(Exception):
    """Snapshots that cannot train a WNN as asked; the message says what to do."""


@dataclass(frozen=True)
class Trajectory:
    source: str
    rows: np.ndarray    # snapshot rows of Snapshots, in step order
    steps: np.ndarray   # their global steps
    spacing: int | None  # steps between recordings (None: irregular, allowed by the caller)


def trajectories(snaps: Snapshots, allow_irregular: bool = False) -> list[Trajectory]:
    """Each source directory's snapshots in step order, checked to be recorded at regular steps."""
    out = []
    for source in dict.fromkeys(r["source"] for r in snaps.records):
        rows = np.array([i for i, r in enumerate(snaps.records) if r["source"] == source])
        steps = np.array([snaps.records[i].get("step", -1) for i in rows])
        order = np.argsort(steps, kind="stable")
        rows, steps = rows[order], steps[order]
        gaps = np.diff(steps)
        if len(gaps) and gaps.min() <= 0:
            raise WnnError(f"{source}: two snapshots have the same step {steps[np.argmin(gaps)]} (two runs in one "
                           f"directory?); collect each run into its own directory")
        spacing = int(gaps[0]) if len(gaps) and np.all(gaps == gaps[0]) else None
        if spacing is None and len(gaps) and not allow_irregular:
            raise WnnError(f"{source}: snapshots are at irregular steps (gaps from {gaps.min()} to {gaps.max()}); "
                           f"the WNN learns from regular recordings: collect with regular snapshots, or pass "
                           f"--allow-irregular to treat them as evenly spaced")
        out.append(Trajectory(source, rows, steps, spacing))
    return out


@dataclass(frozen=True)
class Anchor:
    """One example position: snapshot rows of the history (oldest first) and of the target."""

    history: np.ndarray
    target: int


def anchors(trajs: list[Trajectory], spacing: int, horizon: int, holdout: float) -> tuple[list[Anchor], list[Anchor]]:
    """(train, held-out) anchors; held-out ones lie wholly in the last `holdout` share of each trajectory."""
    span = (features.HISTORY - 1 + horizon) * spacing + 1  # snapshots one example covers
    train, held = [], []
    for traj in trajs:
        n = len(traj.rows)
        cut = n - max(1, int(round(holdout * n)))
        for last in range((features.HISTORY - 1) * spacing, n - horizon * spacing):
            first, target = last - (features.HISTORY - 1) * spacing, last + horizon * spacing
            anchor = Anchor(traj.rows[first : last + 1 : spacing], int(traj.rows[target]))
            if target < cut:
                train.append(anchor)
            elif first >= cut:
                held.append(anchor)
    if not train or not held:
        sizes = ", ".join(str(len(t.rows)) for t in trajs)
        raise WnnError(
            f"too few snapshots ({sizes}) for a history of {features.HISTORY} at spacing {spacing} and horizon "
            f"{horizon}: one example spans {span} snapshots, and both the training stretch and the held-out "
            f"last {holdout:g} need at least one; collect more snapshots (smaller --snapshot-every, more epochs) "
            f"or lower --horizon / --spacing"
        )
    return train, held


def kind_indices(layout: Layout) -> dict[str, np.ndarray]:
    """Positions in the flat vector of every weight of each kind."""
    spans: dict[str, list[np.ndarray]] = {kind: [] for kind in network.KINDS}
    for spec in layout.params:
        a, b = layout.offset(spec.name)
        spans[network.kind_of(spec)].append(np.arange(a, b))
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in spans.items()}


@dataclass
class Pairs:
    history: np.ndarray  # [HISTORY, m] float32
    target: np.ndarray   # [m] float32

    def __len__(self) -> int:
        return self.target.shape[0]


def sample_pairs(snaps: Snapshots, chosen: list[Anchor], indices: np.ndarray, per_anchor: int,
                 rng: np.random.Generator) -> Pairs:
    """`per_anchor` random weights (of `indices`; all when fewer) at every anchor."""
    histories, targets = [], []
    for anchor in chosen:
        cols = indices if len(indices) <= per_anchor else rng.choice(indices, per_anchor, replace=False)
        histories.append(snaps.vectors(anchor.history)[:, cols])
        targets.append(snaps.vectors([anchor.target])[0, cols])
    return Pairs(np.concatenate(histories, 1).astype(np.float32), np.concatenate(targets).astype(np.float32))


def _clipped_target(pairs_history, pairs_target) -> tuple[features.Encoded, tf.Tensor]:
    encoded = features.encode(pairs_history)
    return encoded, tf.clip_by_value(features.target_change(pairs_target, encoded), -TARGET_CLIP, TARGET_CLIP)


class KindTrainer:
    """One nowcaster's variables, its Adam and a compiled training step."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, l1_kernel: float, l1_bias: float) -> None:
        self.vars = {k: tf.Variable(v) for k, v in params.items()}
        self.adam = Adam(self.vars, lr)
        self.l1_kernel, self.l1_bias = l1_kernel, l1_bias
        names = list(self.vars)

        @tf.function(reduce_retracing=True)
        def step(history, target):
            encoded, goal = _clipped_target(history, target)
            with tf.GradientTape() as tape:
                error = tf.reduce_mean(tf.abs(network.change(self.vars, encoded) - goal))
                loss = error + network.regularization(self.vars, self.l1_kernel, self.l1_bias)
            self.adam.apply(tape.gradient(loss, [self.vars[n] for n in names]))
            return error

        self._step = step

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.vars.items()}

    def train_epoch(self, pairs: Pairs, batch: int, rng: np.random.Generator,
                    on_step: Callable[[int, float], None] = lambda done, loss: None) -> float:
        """One shuffled pass; the mean absolute error of its steps (normalised units)."""
        order = rng.permutation(len(pairs))
        losses = []
        for i in range(0, len(order), batch):
            cols = order[i : i + batch]
            loss = float(self._step(tf.constant(pairs.history[:, cols]), tf.constant(pairs.target[cols])))
            if not np.isfinite(loss):
                raise FloatingPointError(f"the training loss became {loss}; lower --lr")
            losses.append(loss)
            on_step(len(losses), loss)
        return float(np.mean(losses))


def evaluate(params, pairs: Pairs) -> dict[str, float]:
    """Held-out mean absolute error (normalised units, clipped targets) of the nowcaster and of
    predicting no change, and the same in weight units (unclipped)."""
    encoded, goal = _clipped_target(pairs.history, pairs.target)
    predicted = network.change(params, encoded)
    jumped = features.decode(predicted, encoded)
    return {
        "loss": float(tf.reduce_mean(tf.abs(predicted - goal))),
        "no_change_loss": float(tf.reduce_mean(tf.abs(goal))),
        "weight_mae": float(np.mean(np.abs(jumped.numpy() - pairs.target))),
        "no_change_weight_mae": float(np.mean(np.abs(pairs.history[-1] - pairs.target))),
    }


def jump_vector(params: dict[str, dict], history: np.ndarray, indices: dict[str, np.ndarray]) -> np.ndarray:
    """The whole model vector jumped from a [HISTORY, total] history, each kind by its nowcaster."""
    out = np.array(history[-1], np.float32)
    for kind, cols in indices.items():
        if len(cols):
            out[cols] = network.predict(params[kind], history[:, cols]).numpy()
    return out


class Tester:
    """Test accuracy of the target model for a flat parameter vector."""

    def __init__(self, model, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self._accuracy = VectorAccuracy(model)

    def accuracy(self, vector: np.ndarray) -> float:
        return self._accuracy(vector, self.images, self.labels)
