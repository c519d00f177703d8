"""LeNet-5 for 28x28x1 images: two VALID 5x5 convs (pushed), three dense layers (predicted)."""
from __future__ import annotations

import tensorflow as tf

from models.base import Model
from models.layout import LayoutBuilder


def build(classes: int) -> Model:
    b = LayoutBuilder("lenet5", classes)
    b.conv("conv1", 5, 1, 6)
    b.conv("conv2", 5, 6, 16)
    b.dense("fc1", 256, 120)
    b.dense("fc2", 120, 84)
    b.dense("fc3", 84, classes)
    return Model("lenet5", (28, 28, 1), b.build(pushed_layers=2), forward)


def forward(p, images):
    x = _conv_pool(images, p["conv1/w"], p["conv1/b"])
    x = _conv_pool(x, p["conv2/w"], p["conv2/b"])
    x = tf.reshape(x, [-1, 256])
    x = tf.nn.relu(tf.matmul(x, p["fc1/w"]) + p["fc1/b"])
    x = tf.nn.relu(tf.matmul(x, p["fc2/w"]) + p["fc2/b"])
    return tf.matmul(x, p["fc3/w"]) + p["fc3/b"]


def _conv_pool(x, w, b):
    x = tf.nn.relu(tf.nn.conv2d(x, w, strides=1, padding="VALID") + b)
    return tf.nn.max_pool2d(x, 2, 2, "VALID")
