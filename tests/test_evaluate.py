"""models/evaluate.py: the accuracy of a flat parameter vector, in chunks, eager and in a graph."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import data
import models
from models.evaluate import VectorAccuracy, accuracy, in_chunks, predicted_labels

pytestmark = pytest.mark.unit


def test_accuracy_counts_hits_over_uneven_chunks():
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    images = np.arange(7)[:, None]  # the "prediction" is the image itself, wrong on the last two
    predict = lambda x: np.where(x[:, 0] < 5, x[:, 0], 0)  # noqa: E731
    assert accuracy(predict, images, labels, chunk=3) == pytest.approx(5 / 7)
    assert list(in_chunks(predict, images, 3)) == [0, 1, 2, 3, 4, 0, 0]
    assert accuracy(predict, images[:0], labels[:0]) == 0.0


def test_eager_and_graph_labels_agree_with_the_forward_pass():
    lenet = models.get("lenet5", 10)
    ds = data.synthetic((28, 28, 1), 10, seed=0)
    vector = lenet.init_vector(3)
    images, labels = ds.test_x[:300], ds.test_y[:300]
    logits = lenet.forward({k: tf.constant(v) for k, v in lenet.layout.unflatten(vector).items()}, images).numpy()
    expected = float(np.mean(np.argmax(logits, 1) == labels))
    # A traced graph may round differently from eager ops: one near-tie of 300 may flip, no more.
    assert abs(VectorAccuracy(lenet, chunk=128)(vector, images, labels) - expected) <= 1 / 300
    graph = predicted_labels(lenet, tf.constant(vector), tf.constant(images)).numpy()
    assert np.sum(graph != np.argmax(logits, 1)) <= 1
