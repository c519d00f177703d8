"""The predictor's training step (result-based or MSE loss) and the held-out evaluation.

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
from models import Model
from predictor import Predictor
from stage.adam import Adam

LOSSES = ("result", "mse")
EVAL_CHUNK = 1000  # test images per forward pass


class ImageStream:
    """Consecutive mini-batches of a fresh permutation of the training images, reshuffled when used up."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator) -> None:
        if batch > n:
            raise ValueError(f"--image-batch {batch} is larger than the training set ({n} images)")
        self.n, self.batch, self.rng = n, batch, rng
        self.order, self.pos = rng.permutation(n), 0

    def next(self) -> np.ndarray:
        if self.pos + self.batch > self.n:
            self.order, self.pos = self.rng.permutation(self.n), 0
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx


class Trainer:
    def __init__(self, model: Model, predictor: Predictor, loss: str, lr: float) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; one of {', '.join(LOSSES)}")
        self.model, self.predictor, self.loss = model, predictor, loss
        self.layout = model.layout
        self.adam = Adam(predictor.weight_vars, lr)
        self.variables = self.adam.vars
        # Traced once per snapshot-batch size (a smaller last batch adds one trace).
        self._result_step = tf.function(self._result_step_fn)
        self._mse_step = tf.function(self._mse_step_fn)
        h, w, c = model.input_shape
        spec = {p.name: tf.TensorSpec(p.shape, tf.float32) for p in self.layout.params}
        self._predict_fn = tf.function(
            lambda params, images: tf.argmax(model.forward(params, images), axis=1, output_type=tf.int32),
            input_signature=[spec, tf.TensorSpec([None, h, w, c], tf.float32)],
        )

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

    def accuracy(self, vector: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
        """Test accuracy of the target network with the flat parameter vector `vector`."""
        params = self.layout.unflatten(np.asarray(vector, np.float32))
        params = {k: tf.constant(v) for k, v in params.items()}
        correct = 0
        for a in range(0, len(labels), EVAL_CHUNK):
            pred = self._predict_fn(params, tf.constant(images[a:a + EVAL_CHUNK])).numpy()
            correct += int(np.sum(pred == labels[a:a + EVAL_CHUNK]))
        return correct / max(1, len(labels))


def train_epoch(trainer: Trainer, snaps, train_rows: np.ndarray, dataset: data.Dataset, *,
                snapshot_batch: int, image_batches: int, image_batch: int, mixup: float,
                rng: np.random.Generator, on_step: Callable[[int, float], None]) -> float:
    """One pass over the training snapshots (shuffled, in batches); the mean loss of its steps."""
    order = rng.permutation(train_rows)
    stream = ImageStream(len(dataset.train_y), image_batch, rng) if trainer.loss == "result" else None
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
