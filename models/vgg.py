"""VGG-15 (downsized) for 32x32x3 images: twelve 3x3 SAME convs in five blocks, three dense layers.

Conv widths 64,64 | 128,128 | 256,256,256 | 256,256 | 256,256,256 (conv1..conv12), ReLU after
each, a max pool 2 after each block (32 -> 1, so 1x1x256 at the end); fc1 100, fc2 100 (ReLU),
fc3 classes. Pushed: the first four convs (260,160 values); total 4,722,698 with 10 classes.
"""
from __future__ import annotations

import tensorflow as tf

from models.base import Model
from models.layout import LayoutBuilder

BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (256, 256), (256, 256, 256))


def build(classes: int) -> Model:
    b = LayoutBuilder("vgg15", classes)
    cin, i = 3, 0
    for block in BLOCKS:
        for cout in block:
            i += 1
            b.conv(f"conv{i}", 3, cin, cout)
            cin = cout
    b.dense("fc1", cin, 100)
    b.dense("fc2", 100, 100)
    b.dense("fc3", 100, classes)
    return Model("vgg15", (32, 32, 3), b.build(pushed_layers=4), forward)


def forward(p, images):
    x, i = images, 0
    for block in BLOCKS:
        for _ in block:
            i += 1
            w, b = p[f"conv{i}/w"], p[f"conv{i}/b"]
            x = tf.nn.relu(tf.nn.conv2d(x, w, strides=1, padding="SAME") + b)
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
    x = tf.reshape(x, [-1, BLOCKS[-1][-1]])  # 1x1x256 after five pools of 2
    x = tf.nn.relu(tf.matmul(x, p["fc1/w"]) + p["fc1/b"])
    x = tf.nn.relu(tf.matmul(x, p["fc2/w"]) + p["fc2/b"])
    return tf.matmul(x, p["fc3/w"]) + p["fc3/b"]
