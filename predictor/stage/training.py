"""The predictor's training step (result-based or MSE loss), its image split and the held-out evaluation.

Result loss: the target network is assembled from each snapshot's pushed group and the predictor's
output, and its softmax cross-entropy on (mixup) training images is back-propagated into the
predictor's variables only. MSE loss: the predictor's output regresses the snapshot's true predicted
group (the ablation).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

import data
from helpers.optim import Adam
from models import Model
from models.evaluate import VectorAccuracy
from predictor import Predictor

from predictor.stage.flags import LOSSES
# The validation images are fixed by this seed alone: predictors trained with different --seed are
# selected on the same images.
VALIDATION_SEED = 20240917


def split_images(n: int, validation: int) -> tuple[np.ndarray, np.ndarray]:
    """(loss images, validation images): indices of an n-image training set; the validation ones are
    the last `validation` of a fixed seeded permutation. Both ascending, disjoint, covering all n."""
    if not 0 < validation < n:
        raise ValueError(f"--val-images must be between 1 and {n - 1} (the training set has {n} images), "
                         f"got {validation}")
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    return np.sort(order[:n - validation]), np.sort(order[n - validation:])


class ImageStream:
    """Consecutive mini-batches of a fresh permutation of `pool` (image indices), reshuffled when used up."""

    def __init__(self, pool: np.ndarray, batch: int, rng: np.random.Generator) -> None:
        if batch > len(pool):
            raise ValueError(f"--image-batch {batch} is larger than the images the loss may use "
                             f"({len(pool)}: the training set without the validation images)")
        self.pool, self.batch, self.rng = np.asarray(pool), batch, rng
        self.order, self.pos = rng.permutation(self.pool), 0

    def next(self) -> np.ndarray:
        if self.pos + self.batch > len(self.pool):
            self.order, self.pos = self.rng.permutation(self.pool), 0
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx


class Trainer:
    def __init__(self, model: Model, predictor: Predictor, loss: str, lr: float, warmup_steps: int = 0) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; one of {', '.join(LOSSES)}")
        self.model, self.predictor, self.loss = model, predictor, loss
        self.layout = model.layout
        self.adam = Adam(predictor.weight_vars, lr, warmup_steps=warmup_steps)
        self.variables = self.adam.vars
        # Traced once per snapshot-batch size (a smaller last batch adds one trace).
        self._result_step = tf.function(self._result_step_fn)
        self._mse_step = tf.function(self._mse_step_fn)
        self.accuracy = VectorAccuracy(model)  # (vector, images, labels) -> accuracy

    # --- training ------------------------------------------------------------------------------
    def step(self, pushed: np.ndarray, predicted: np.ndarray, images: np.ndarray | None,
             targets: np.ndarray | None) -> float:
        """One optimizer step on a snapshot batch (pushed [B, P], predicted [B, total - P]);
        images and soft targets are used by the result loss only."""
        if self.loss == "result":
            return float(self._result_step(tf.constant(pushed), tf.constant(images), tf.constant(targets)))
        return float(self._mse_step(tf.constant(pushed), tf.constant(predicted)))

    def _result_step_fn(self, pushed, images, targets):
        with tf.GradientTape() as tape:
            params = self.predictor.predict_params(pushed)  # name -> [B, *shape]
            losses = []
            for i in range(pushed.shape[0]):  # static: one assembled network per snapshot of the batch
                logits = self.model.forward({k: v[i] for k, v in params.items()}, images)
                losses.append(tf.reduce_mean(
                    tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)))
            loss = tf.add_n(losses) / len(losses)
        self.adam.apply(tape.gradient(loss, self.variables))
        return loss

    def _mse_step_fn(self, pushed, predicted):
        with tf.GradientTape() as tape:
            out = self.layout.split(self.predictor(pushed))[1]
            loss = tf.reduce_mean(tf.square(out - predicted))
        self.adam.apply(tape.gradient(loss, self.variables))
        return loss

    # --- evaluation ----------------------------------------------------------------------------
    def assembled(self, pushed: np.ndarray) -> np.ndarray:
        """The full parameter vector the predictor makes from one snapshot's pushed group."""
        return self.predictor(pushed[None, :]).numpy()[0]


def train_epoch(trainer: Trainer, snaps, train_rows: np.ndarray, dataset: data.Dataset, *,
                loss_images: np.ndarray, snapshot_batch: int, image_batches: int, image_batch: int,
                mixup: float, rng: np.random.Generator, on_step: Callable[[int, float], None]) -> float:
    """One pass over the training snapshots (shuffled, in batches); the mean loss of its steps.
    The result loss draws its mini-batches from `loss_images` (training-image indices) only."""
    order = rng.permutation(train_rows)
    stream = ImageStream(loss_images, image_batch, rng) if trainer.loss == "result" else None
    total, steps = 0.0, 0
    for a in range(0, len(order), snapshot_batch):
        rows = order[a:a + snapshot_batch]
        pushed, predicted = snaps.pushed[rows], snaps.predicted[rows]
        for _ in range(image_batches):
            images = targets = None
            if stream is not None:
                idx = stream.next()
                images, targets = data.mixup(dataset.train_x[idx], dataset.train_y[idx], dataset.classes,
                                             mixup, rng)
            loss = trainer.step(pushed, predicted, images, targets)
            if not np.isfinite(loss):
                raise FloatingPointError(f"the {trainer.loss} loss became {loss} at step {steps + 1} "
                                         f"of the epoch; lower --lr")
            total += loss
            steps += 1
            on_step(steps, loss)
    return total / max(1, steps)


def steps_per_epoch(train_snapshots: int, snapshot_batch: int, image_batches: int) -> int:
    return -(-train_snapshots // snapshot_batch) * image_batches
