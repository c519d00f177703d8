"""Stage 1 of MP²: the PS's snapshots of the global model during ordinary (baseline) training."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from data import Dataset
from models import Model
from models.evaluate import accuracy, predicted_labels
from paramset.store import ParamSetWriter


class SnapshotCollector:
    """Takes one snapshot at a random step in every window of `every` steps, with its test accuracy.

    Random steps rather than every K-th keep snapshots from lining up with any periodic pattern
    of the data schedule. With `regular`, the snapshot is the window's last step instead (steps
    K, 2K, ...): evenly spaced recordings, which the WNN's training needs. Accuracy is measured
    on the first `eval_images` test images, on the PS.
    """

    def __init__(self, session: tf.compat.v1.Session, device: str, model: Model, dataset: Dataset,
                 writer: ParamSetWriter, every: int, seed: int, eval_images: int = 1000,
                 regular: bool = False) -> None:
        self.session, self.writer, self.every, self.regular = session, writer, every, regular
        self.seed = seed
        self.images = dataset.test_x[:eval_images]
        self.labels = dataset.test_y[:eval_images]
        with tf.device(device):
            self.vector = tf.compat.v1.placeholder(tf.float32, [model.layout.total])
            self.batch = tf.compat.v1.placeholder(tf.float32, [None, *model.input_shape])
            self.predictions = predicted_labels(model, self.vector, self.batch)
        self._window, self._chosen = -1, -1

    def after_step(self, step: int, epoch: int, vector) -> None:
        """Call after global step `step` (0-based, counted over the whole run) with the new model.

        `vector` may be a function that fetches it, called only when this step is snapshotted.
        """
        window = step // self.every
        if window != self._window:
            offset = self.every - 1 if self.regular else int(np.random.default_rng([self.seed, 7919, window]).integers(self.every))
            self._window, self._chosen = window, window * self.every + offset
        if step == self._chosen:
            vector = vector() if callable(vector) else vector
            test_acc = accuracy(lambda x: self.session.run(self.predictions, {self.vector: vector, self.batch: x}),
                                self.images, self.labels)
            self.writer.add(vector, step=step + 1, epoch=epoch + 1, test_acc=test_acc,
                            test_images=len(self.images))

    def flush(self) -> None:
        self.writer.flush()
