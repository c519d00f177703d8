"""Seeded initial weights for the predictor, drawn in numpy so eager and graph builds agree.

Encoder: He-uniform before a ReLU, Glorot-uniform before the SE sigmoid, zero biases. The SE
bottleneck's first kernel is drawn non-negative (|He-uniform|): its input, the channel means of ReLU
activations, is non-negative, so a zero-mean kernel would leave each bottleneck unit dead with
probability ~1/2 -- and the blocks' bottleneck has only 2 units, so both were often dead at init,
which freezes that attention forever (no gradient through a dead ReLU).

Decoder heads are calibrated: an untrained predictor should emit each target layer at about the
spread of that layer's Glorot init, so the assembled network trains from the first step (neither
exploding nor all-zero logits). The heads are linear in the 64 hidden units h, so we run the numpy
encoder once on a representative pushed group (the target model's own Glorot init, i.e. what early
snapshots look like) and scale each head to hit the target standard deviation s:
  conv head  out[p, c] = h[p] * w[c]        ->  std(out) = rms(h) * std(w)   ->  std(w) = s / rms(h)
  dense head out[j] = sum_k h[k] * w[k, j]  ->  std(out) = |h| * std(w)      ->  std(w) = s / |h|
With a head rank R > 1 a conv head decodes its own projection u = h P ([8x8, R], P drawn Glorot):
  out[p, c] = sum_r u[p, r] * w[r, c]     ->  std(out) = sqrt(mean_p sum_r u[p, r]^2) * std(w)
which is rms(h) again for R = 1 (u = h). With a dense rank a dense head decodes u = h D ([R], D drawn
Glorot), so std(w) = s / |u|.
"""
from __future__ import annotations

import math

import numpy as np

from models.layout import PREDICTED, PUSHED, Layout, glorot_init
from predictor.structure import (
    FAITHFUL_HEAD_RANK, FILTERS, GRID, HIDDEN, blocks, down_name, grid_channels, head_name, projection_name,
    weight_specs,
)


def initial_weights(layout: Layout, stage: str, seed: int, head_rank: int = FAITHFUL_HEAD_RANK,
                    dense_rank: int | None = None) -> dict[str, np.ndarray]:
    # The encoder's draws come first and do not depend on the heads' ranks: one seed, one encoder.
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    specs = weight_specs(layout, stage, head_rank, dense_rank)
    for s in specs:
        if s.init == "zeros":
            out[s.name] = np.zeros(s.shape, np.float32)
        elif s.init in ("he", "he_positive", "glorot"):
            fan_in, fan_out = _fans(s.shape)
            glorot = s.init == "glorot"
            limit = math.sqrt(6.0 / (fan_in + fan_out)) if glorot else math.sqrt(6.0 / fan_in)
            value = rng.uniform(-limit, limit, s.shape)
            out[s.name] = (np.abs(value) if s.init == "he_positive" else value).astype(np.float32)

    sample = layout.flatten(glorot_init(layout, seed), group=PUSHED)[None, :]
    h = encode(out, sample, stage)[0].astype(np.float64)
    rms, norm = math.sqrt(np.mean(h * h)), float(np.linalg.norm(h))
    if norm == 0.0:  # every hidden unit dead on the sample (unlikely): fall back to unit scale
        rms = norm = 1.0
    for layer in layout.layers(PREDICTED):
        target = math.sqrt(2.0 / sum(_fans(layer.params[0].shape)))  # std of Glorot-uniform
        name = head_name(layer.name)
        shape = next(s.shape for s in specs if s.name == name)
        if layer.kind == "conv" and head_rank > 1:
            u = h @ out[projection_name(layer.name)].astype(np.float64)  # [8x8 * R], position-major
            spread = math.sqrt(np.sum(u * u) / (GRID * GRID)) or 1.0
        elif layer.kind == "dense" and dense_rank is not None:
            spread = float(np.linalg.norm(h @ out[down_name(layer.name)].astype(np.float64))) or 1.0
        else:
            spread = rms if layer.kind == "conv" else norm
        std = target / spread
        limit = std * math.sqrt(3.0)  # uniform(-a, a) has std a / sqrt(3)
        out[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
    return out


def encode(w: dict[str, np.ndarray], pushed: np.ndarray, stage: str) -> np.ndarray:
    """The encoder and first decoder layer in numpy: [B, P] -> the 64 hidden units [B, 64].

    Mirrors Predictor.hidden; used for calibration here and as a reference in the tests.
    """
    x = np.asarray(pushed, np.float64)
    b, p = x.shape
    if stage == "vector":
        z = _relu(x @ w["input/conv/w"].reshape(p, HIDDEN) + w["input/conv/b"])
        z = z * _se(w, "input", z)
        z = _pool(z.reshape(b, GRID, GRID, 1))
    else:
        c = grid_channels(p)
        z = np.pad(x, [(0, 0), (0, GRID * GRID * c - p)]).reshape(b, GRID, GRID, c)
    for i in range(1, blocks(stage) + 1):
        y = _relu(_conv3x3(z, w[f"block{i}/conv/w"]) + w[f"block{i}/conv/b"])
        y = y * _se(w, f"block{i}", y.mean(axis=(1, 2)))[:, None, None, :]
        z = _pool(y)
    z = z.reshape(b, FILTERS)
    return _relu(z @ w["decoder/dense/w"] + w["decoder/dense/b"])


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _se(w: dict[str, np.ndarray], prefix: str, squeezed: np.ndarray) -> np.ndarray:
    """Channel weights in (0, 1) from the per-channel means [B, C]."""
    w1, w2 = w[f"{prefix}/se/w1"], w[f"{prefix}/se/w2"]
    s = _relu(squeezed @ w1.reshape(w1.shape[2:]) + w[f"{prefix}/se/b1"])
    return 1.0 / (1.0 + np.exp(-(s @ w2.reshape(w2.shape[2:]) + w[f"{prefix}/se/b2"])))


def _conv3x3(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """3x3 stride-1 SAME cross-correlation, as tf.nn.conv2d."""
    _, h, wd, _ = x.shape
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    return sum(xp[:, i:i + h, j:j + wd, :] @ k[i, j] for i in range(3) for j in range(3))


def _pool(x: np.ndarray) -> np.ndarray:
    b, h, wd, c = x.shape
    return x.reshape(b, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
