"""AlexNet (downsized) for 32x32x3 images: five SAME 3x3/5x5 convs, three dense layers.

conv1 3x3x96 -> max pool 2; conv2 5x5x256 -> max pool 2; conv3 3x3x384; conv4 3x3x384;
conv5 3x3x256 -> max pool 8 (1x1x256); fc1 100; fc2 100; fc3 classes. ReLU after every layer
but the last. Pushed: conv1 and conv2 (617,344 values); total 3,751,754 with 10 classes.
"""
from __future__ import annotations

import tensorflow as tf

from models.base import Model
from models.layout import LayoutBuilder


def build(classes: int) -> Model:
    b = LayoutBuilder("alexnet", classes)
    b.conv("conv1", 3, 3, 96)
    b.conv("conv2", 5, 96, 256)
    b.conv("conv3", 3, 256, 384)
    b.conv("conv4", 3, 384, 384)
    b.conv("conv5", 3, 384, 256)
    b.dense("fc1", 256, 100)
    b.dense("fc2", 100, 100)
    b.dense("fc3", 100, classes)
    return Model("alexnet", (32, 32, 3), b.build(pushed_layers=2), forward)


def forward(p, images):
    x = tf.nn.max_pool2d(_conv(images, p, "conv1"), 2, 2, "VALID")  # 16x16x96
    x = tf.nn.max_pool2d(_conv(x, p, "conv2"), 2, 2, "VALID")  # 8x8x256
    x = _conv(x, p, "conv3")
    x = _conv(x, p, "conv4")
    x = tf.nn.max_pool2d(_conv(x, p, "conv5"), 8, 8, "VALID")  # 1x1x256
    x = tf.reshape(x, [-1, 256])
    x = tf.nn.relu(tf.matmul(x, p["fc1/w"]) + p["fc1/b"])
    x = tf.nn.relu(tf.matmul(x, p["fc2/w"]) + p["fc2/b"])
    return tf.matmul(x, p["fc3/w"]) + p["fc3/b"]


def _conv(x, p, name):
    return tf.nn.relu(tf.nn.conv2d(x, p[f"{name}/w"], strides=1, padding="SAME") + p[f"{name}/b"])
