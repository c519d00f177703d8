"""The Weight Nowcaster Network: parameters as data plus a pure function of them.

One small network is applied to every scalar weight on its own; a model gets three of them, for
convolution kernels, dense kernels and biases (`KINDS`, `kind_of`). For one weight:

    history stream: normalised last 5 values  -> dense 64 -> activation block -> dense 32 -> LeakyReLU
    deltas stream:  their 4 differences       -> dense 64 -> activation block -> dense 32 -> LeakyReLU
    head:           concat (64)                -> dense 1 -> tanh: the change, in normalised units

The activation block is the reference's trainable exponential activation: from the 64 features x,
z = relu(dense 8(x)) and out = base(z) + gain(z) * exp(rate(z) * x), base/gain/rate dense 8 -> 64.
That block is most of the size: 9,425 parameters per network (4,929 without it).

Activations are laid out [features, n] (weights along the last axis), so a [5, n] history feeds
the network without transposes and n can be millions; `predict` runs it in chunks.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import tensorflow as tf

from models.layout import ParamSpec
from wnn import features

KINDS: tuple[str, ...] = ("conv", "dense", "bias")
STREAMS: dict[str, int] = {"history": features.HISTORY, "deltas": features.HISTORY - 1}
WIDE, NARROW, SQUEEZE = 64, 32, 8
LEAK = 0.3             # Keras' LeakyReLU default, which the reference uses
DEFAULT_CHUNK = 65536  # weights per block in `predict`: 4 live [64, chunk] float32 blocks ≈ 67 MB

Params = Mapping[str, object]  # name -> numpy array or tf tensor/variable


def kind_of(spec: ParamSpec) -> str:
    """Which nowcaster a layout tensor gets: 1-D tensors are biases, else the layer's kind."""
    return "bias" if len(spec.shape) == 1 else spec.kind


def shapes() -> dict[str, tuple[int, ...]]:
    """Every parameter of one nowcaster: name -> shape (kernels are [in, out])."""
    out: dict[str, tuple[int, ...]] = {}
    for stream, width in STREAMS.items():
        for name, fan_in, fan_out in ((f"{stream}/in", width, WIDE), (f"{stream}/squeeze", WIDE, SQUEEZE),
                                      (f"{stream}/base", SQUEEZE, WIDE), (f"{stream}/gain", SQUEEZE, WIDE),
                                      (f"{stream}/rate", SQUEEZE, WIDE), (f"{stream}/out", WIDE, NARROW)):
            out[f"{name}/w"], out[f"{name}/b"] = (fan_in, fan_out), (fan_out,)
    out["head/w"], out["head/b"] = (2 * NARROW, 1), (1,)
    return out


def count() -> int:
    """Parameters of one nowcaster."""
    return sum(math.prod(s) for s in shapes().values())


def init(seed: int) -> dict[str, np.ndarray]:
    """Initial parameters as the reference initialises them: the stream input and output layers
    uniform with variance 0.1 / fan_in (small steps at first), the others Glorot-uniform; zero biases."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in shapes().items():
        if len(shape) == 1:
            params[name] = np.zeros(shape, np.float32)
            continue
        fan_in, fan_out = shape
        small = name.endswith(("/in/w", "/out/w"))
        limit = math.sqrt(3 * 0.1 / fan_in) if small else math.sqrt(6 / (fan_in + fan_out))
        params[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
    return params


def _dense(params: Params, name: str, x: tf.Tensor) -> tf.Tensor:
    return tf.matmul(params[f"{name}/w"], x, transpose_a=True) + params[f"{name}/b"][:, None]


def _stream(params: Params, stream: str, x: tf.Tensor) -> tf.Tensor:
    wide = _dense(params, f"{stream}/in", x)
    z = tf.nn.relu(_dense(params, f"{stream}/squeeze", wide))
    activated = _dense(params, f"{stream}/base", z) + _dense(params, f"{stream}/gain", z) * tf.exp(
        _dense(params, f"{stream}/rate", z) * wide)
    return tf.nn.leaky_relu(_dense(params, f"{stream}/out", activated), alpha=LEAK)


def change(params: Params, encoded: features.Encoded) -> tf.Tensor:
    """The predicted normalised change [n] of each weight from its encoded history."""
    joined = tf.concat([_stream(params, "history", encoded.normed), _stream(params, "deltas", encoded.deltas)], 0)
    return tf.tanh(_dense(params, "head", joined))[0]


def _predict_block(params: Params, history: tf.Tensor) -> tf.Tensor:
    encoded = features.encode(history)
    return features.decode(change(params, encoded), encoded)


def predict(params: Params, history, chunk: int = DEFAULT_CHUNK) -> tf.Tensor:
    """New weights [n] from a [HISTORY, n] float32 history (oldest first); graph or eager.

    More than `chunk` weights are run one block at a time (tf.map_fn, one iteration in flight),
    so the peak memory is that of one block whatever n is.
    """
    history = tf.convert_to_tensor(history, tf.float32)
    n = history.shape[1]
    if n is not None and n <= chunk:
        return _predict_block(params, history)
    total = tf.shape(history)[1]
    padded = tf.pad(history, [[0, 0], [0, (-total) % chunk]])  # zero columns: finite, then dropped
    blocks = tf.transpose(tf.reshape(padded, [features.HISTORY, -1, chunk]), [1, 0, 2])
    out = tf.map_fn(lambda block: _predict_block(params, block), blocks,
                    fn_output_signature=tf.float32, parallel_iterations=1)
    return tf.reshape(out, [-1])[:total]


def regularization(params: Params, l1_kernel: float, l1_bias: float) -> tf.Tensor:
    """The reference's L1 penalty on the stream input and output layers (kernels and biases)."""
    terms = [tf.constant(0.0)]
    for stream in STREAMS:
        for layer in ("in", "out"):
            terms.append(l1_kernel * tf.reduce_sum(tf.abs(params[f"{stream}/{layer}/w"])))
            terms.append(l1_bias * tf.reduce_sum(tf.abs(params[f"{stream}/{layer}/b"])))
    return tf.add_n(terms)
