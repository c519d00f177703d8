"""Accuracy of a flat parameter vector on images: the one place a model's parameters become labels.

The PS's epoch evaluation, the collector's snapshot accuracy and online MP²'s checks build
`predicted_labels` into their graphs; the stage and the WNN evaluate eagerly with `VectorAccuracy`.
All count hits with `accuracy`, a chunk of images at a time (memory stays bounded on large test sets).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from models.base import Model


def predicted_labels(model: Model, vector: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """The int32 labels that `model` with the flat parameters `vector` gives `images` (graph or eager)."""
    logits = model.forward(model.layout.unflatten(vector), images)
    return tf.argmax(logits, axis=1, output_type=tf.int32)


def in_chunks(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, chunk: int) -> np.ndarray:
    """`predict` (images -> labels) over `images`, `chunk` at a time."""
    return np.concatenate([np.asarray(predict(images[a : a + chunk])) for a in range(0, len(images), chunk)]
                          or [np.zeros(0, np.int32)])


def accuracy(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
             chunk: int = 500) -> float:
    """The fraction of `images` whose label `predict` gets right (0 for no images)."""
    return float(np.sum(in_chunks(predict, images, chunk) == labels)) / max(1, len(labels))


class VectorAccuracy:
    """Eager: accuracy of any flat parameter vector of `model` on given images (traced once)."""

    def __init__(self, model: Model, chunk: int = 1000) -> None:
        self.chunk = chunk
        self._predict = tf.function(lambda vector, images: predicted_labels(model, vector, images),
                                    input_signature=[tf.TensorSpec([model.layout.total], tf.float32),
                                                     tf.TensorSpec([None, *model.input_shape], tf.float32)])

    def __call__(self, vector: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
        vector = tf.constant(np.asarray(vector, np.float32))
        return accuracy(lambda x: self._predict(vector, tf.constant(x)).numpy(), images, labels, self.chunk)
