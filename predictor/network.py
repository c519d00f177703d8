"""The MP² predictor: pushed group -> full parameter vector, built from any model's layout.

Plain tf.Variable and tf.nn ops (no Keras), so the same object runs eagerly and inside a
tf.compat.v1 graph session on the parameter server. Structure: docs/design/predictor.md, "The predictor".
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import tensorflow as tf

from models.layout import PREDICTED, PUSHED, Layout
from predictor.init import initial_weights
from predictor.structure import (
    FAITHFUL_HEAD_RANK, FILTERS, GRID, HIDDEN, blocks, check_dense_rank, check_head_rank, choose_stage, down_name,
    grid_channels, head_name, infer_dense_rank, infer_head_rank, infer_stage, projection_name, weight_problems,
    weight_specs,
)


class Predictor(tf.Module):
    """Maps the pushed group [P] or [B, P] to the full parameter vector [total] or [B, total]."""

    def __init__(
        self,
        layout: Layout,
        weights: Mapping[str, np.ndarray] | None = None,
        seed: int = 0,
        input_stage: str = "auto",
        head_rank: int | None = None,
        dense_rank: int | None = None,
    ) -> None:
        """head_rank: rank of the conv heads (default 1, the reference's); dense_rank: the dense heads'
        bottleneck (default none, the reference's 64 -> n); given weights fix their own."""
        super().__init__(name="mp2_predictor")
        if weights is not None and input_stage == "auto":
            input_stage = infer_stage(weights)  # a checkpoint fixes its own stage
        self.layout = layout
        self.input_stage = choose_stage(layout, input_stage)
        self._predicted = layout.layers(PREDICTED)
        # Weights carry their rank (the runtime rebuilds a checkpoint's predictor from its weights alone).
        rank = FAITHFUL_HEAD_RANK if head_rank is None else check_head_rank(head_rank)
        if weights is not None:
            given = infer_head_rank(weights)
            if head_rank is not None and given != head_rank and self._has_conv_heads():
                raise ValueError(f"the weights are of a rank-{given} predictor, not rank {head_rank}")
            rank = given
        # Without predicted conv layers there is no conv head: every rank is the faithful structure.
        self.head_rank = rank if self._has_conv_heads() else FAITHFUL_HEAD_RANK
        self.dense_rank = check_dense_rank(dense_rank)
        if weights is not None:
            given_dense = infer_dense_rank(weights)
            if dense_rank is not None and given_dense != dense_rank:
                raise ValueError(f"the weights are of a predictor with dense rank {given_dense}, not {dense_rank}")
            self.dense_rank = given_dense
        specs = weight_specs(layout, self.input_stage, self.head_rank, self.dense_rank)
        if weights is None:
            values = initial_weights(layout, self.input_stage, seed, self.head_rank, self.dense_rank)
        else:
            problems = weight_problems(weights, specs)
            if problems:
                raise ValueError(
                    f"weights do not fit the {self.input_stage}-stage, head-rank-{self.head_rank}, dense-rank-"
                    f"{self.dense_rank or 'none'} predictor of {layout.model} "
                    f"({layout.classes} classes): " + "; ".join(problems)
                )
            values = weights
        with self.name_scope:
            # Keyed by our own names: tf uniquifies variable names in a shared graph.
            self.weight_vars: dict[str, tf.Variable] = {
                s.name: tf.Variable(
                    np.asarray(values[s.name], np.float32), name=_tf_name(s.name), trainable=True
                )
                for s in specs
            }

    # --- forward -----------------------------------------------------------------------------
    def __call__(self, pushed) -> tf.Tensor:
        x, batched = self._as_batch(pushed)
        with tf.name_scope(self.name):
            # The predicted branch treats the pushed group as data: no gradient reaches it from there.
            predicted = self._decode(self.hidden(tf.stop_gradient(x)))
            full = self.layout.join(x, predicted)
        return full if batched else full[0]

    def predict_params(self, pushed) -> dict[str, tf.Tensor]:
        """The full parameter set as the target model's named tensors ([B, *shape] when batched).

        The pushed layers are taken from the input itself, not from the joined vector: a loss on the
        assembled network then backpropagates into the predicted layers only, and never through the
        pushed layers' ops (for LeNet-5 the convolutions' backward passes were a third of a training step).
        """
        x, batched = self._as_batch(pushed)
        with tf.name_scope(self.name):
            given = tf.stop_gradient(x)
            parts = {PUSHED: given, PREDICTED: self._decode(self.hidden(given))}
        out = {}
        for group, vector in parts.items():
            params = self.layout.group(group)
            # One split, not a slice per tensor: a slice's gradient is a zero vector of the whole group with
            # the piece written in, summed over the pieces (for LeNet-5, 41,004 values zero-filled four times in
            # every step of an online round).
            for p, piece in zip(params, tf.split(vector, [p.size for p in params], axis=1)):
                out[p.name] = tf.reshape(piece, [-1, *p.shape]) if batched else tf.reshape(piece[0], p.shape)
        return out

    def hidden(self, x: tf.Tensor) -> tf.Tensor:
        """Encoder plus the decoder's first layer: [B, P] -> the 64 hidden units [B, 64]."""
        w = self.weight_vars
        p = self.layout.pushed
        if self.input_stage == "vector":
            # A 1x1 conv on a 1x1 map with P channels is exactly a matmul.
            z = tf.nn.relu(tf.matmul(x, tf.reshape(w["input/conv/w"], [p, HIDDEN])) + w["input/conv/b"])
            z = z * self._se("input", z)
            z = tf.nn.max_pool2d(tf.reshape(z, [-1, GRID, GRID, 1]), 2, 2, "VALID")
        else:
            c = grid_channels(p)
            z = tf.pad(x, [[0, 0], [0, GRID * GRID * c - p]])
            z = tf.reshape(z, [-1, GRID, GRID, c])
        for i in range(1, blocks(self.input_stage) + 1):
            y = tf.nn.relu(
                tf.nn.conv2d(z, w[f"block{i}/conv/w"], strides=1, padding="SAME") + w[f"block{i}/conv/b"]
            )
            y = y * self._se(f"block{i}", tf.reduce_mean(y, axis=[1, 2]))[:, None, None, :]
            z = tf.nn.max_pool2d(y, 2, 2, "VALID")
        z = tf.reshape(z, [-1, FILTERS])
        return tf.nn.relu(tf.matmul(z, w["decoder/dense/w"]) + w["decoder/dense/b"])

    def _se(self, prefix: str, squeezed: tf.Tensor) -> tf.Tensor:
        """Squeeze-and-excitation: channel weights in (0, 1) from per-channel means [B, C].

        Its 1x1 convs act on a 1x1 map, so they are matmuls with the kernels reshaped.
        """
        w1, w2 = self.weight_vars[f"{prefix}/se/w1"], self.weight_vars[f"{prefix}/se/w2"]
        s = tf.nn.relu(tf.matmul(squeezed, tf.reshape(w1, w1.shape[2:])) + self.weight_vars[f"{prefix}/se/b1"])
        return tf.sigmoid(tf.matmul(s, tf.reshape(w2, w2.shape[2:])) + self.weight_vars[f"{prefix}/se/b2"])

    def _decode(self, h: tf.Tensor) -> tf.Tensor:
        """The predicted group [B, predicted] from the hidden units, layer by layer in layout order."""
        outs = []
        for layer in self._predicted:
            w = self.weight_vars[head_name(layer.name)]
            if layer.kind == "conv" and self.head_rank > 1:
                # The layer's own map u = h P as [8x8, R] (position-major), through a bias-free 1x1
                # conv R -> k: element p*k + c is sum_r u[p, r] * w[r, c].
                k, r = w.shape[-1], self.head_rank
                u = tf.reshape(tf.matmul(h, self.weight_vars[projection_name(layer.name)]), [-1, r])
                y = tf.reshape(tf.matmul(u, tf.reshape(w, [r, k])), [-1, GRID * GRID * k])
                outs.append(y[:, : layer.size])
            elif layer.kind == "conv":
                # h as [8, 8, 1] through a bias-free 1x1 conv to k channels, flattened (position-major,
                # channel fastest): element p*k + c is h[p] * w[c]. Broadcasting computes exactly that.
                k = w.shape[-1]
                y = tf.reshape(h[:, :, None] * tf.reshape(w, [1, 1, k]), [-1, GRID * GRID * k])
                outs.append(y[:, : layer.size])
            elif self.dense_rank is not None:
                outs.append(tf.matmul(tf.matmul(h, self.weight_vars[down_name(layer.name)]), w))
            else:
                outs.append(tf.matmul(h, w))
        return tf.concat(outs, axis=1)

    def _has_conv_heads(self) -> bool:
        return any(layer.kind == "conv" for layer in self._predicted)

    def _as_batch(self, pushed) -> tuple[tf.Tensor, bool]:
        if isinstance(pushed, (tf.Tensor, tf.Variable)):
            x = pushed if pushed.dtype == tf.float32 else tf.cast(pushed, tf.float32)
        else:
            x = tf.convert_to_tensor(np.asarray(pushed, np.float32))
        rank = x.shape.rank
        if rank not in (1, 2):
            raise ValueError(f"pushed must be [P] or [B, P], got shape {x.shape}")
        p = x.shape[-1]
        if p is not None and p != self.layout.pushed:
            raise ValueError(
                f"{self.layout.model}: expected {self.layout.pushed} pushed values, got shape {x.shape}"
            )
        return (x, True) if rank == 2 else (x[None, :], False)

    # --- values ------------------------------------------------------------------------------
    def numpy_weights(self) -> dict[str, np.ndarray]:
        """Current values (eager only; in a graph session run `weight_vars` instead)."""
        return {name: v.numpy() for name, v in self.weight_vars.items()}


def _tf_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./-]", "_", name)
