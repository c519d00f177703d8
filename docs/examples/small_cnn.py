"""A model of your own, for `--model path/to/small_cnn.py:small_cnn` (docs/usage.md, "A model of your own").

Two 3x3 convolutions (pushed: the front layers) and two dense layers (predicted), for 28x28x1 images.
"""
import tensorflow as tf

from models import LayoutBuilder, Model


def small_cnn(classes: int) -> Model:
    b = LayoutBuilder("small_cnn", classes)
    b.conv("conv1", 3, 1, 8)        # name, kernel size, input channels, output channels
    b.conv("conv2", 3, 8, 16)
    b.dense("fc1", 7 * 7 * 16, 64)  # name, inputs, outputs
    b.dense("fc2", 64, classes)
    return Model("small_cnn", (28, 28, 1), b.build(pushed_layers=2), forward)


def forward(p, images):
    """logits from the parameters `p` (name -> tensor) and images [batch, 28, 28, 1] in [0, 1]."""
    x = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(images, p["conv1/w"], 1, "SAME") + p["conv1/b"]), 2, 2, "VALID")
    x = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, p["conv2/w"], 1, "SAME") + p["conv2/b"]), 2, 2, "VALID")
    x = tf.nn.relu(tf.matmul(tf.reshape(x, [-1, 7 * 7 * 16]), p["fc1/w"]) + p["fc1/b"])
    return tf.matmul(x, p["fc2/w"]) + p["fc2/b"]
