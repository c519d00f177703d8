"""What a worker sends, what the PS makes of N of them, and what it sends back.

One runtime serves every method; a method is this small interface (in the spirit of GRACE's
compressor / communicator split):

    worker:  payload_up   = method.encode(local)                     (graph ops)
    PS:      model, reply = method.aggregate(payloads_up, model)     (numpy, once per step)
    worker:  method.decode(local, reply)                             (graph ops)

Bytes on the wire are measured from the tensors actually sent, so a method never reports its
own traffic.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import tensorflow as tf

from models import PUSHED, Layout
from runtime.local_model import LocalModel


class Method:
    name = ""
    up_dtypes: list[tf.DType] = [tf.float32]
    down_dtypes: list[tf.DType] = [tf.float32]
    trains: str | None = None  # the layout group a worker computes gradients for; None = all

    def __init__(self, layout: Layout, options: dict | None = None) -> None:
        self.layout = layout
        self.options = dict(options or {})

    # --- worker side: graph ops ---------------------------------------------------------------
    def encode(self, local: LocalModel) -> list[tf.Tensor]:
        raise NotImplementedError

    def decode(self, local: LocalModel, payload: list[tf.Tensor]) -> tf.Operation:
        raise NotImplementedError

    # --- PS side: numpy ---------------------------------------------------------------------------
    def prepare_ps(self, session: tf.compat.v1.Session, device: str, ps_options: dict) -> None:
        """Build whatever the PS needs beyond averaging (MP²: the predictor)."""

    def aggregate(self, payloads: list[list[np.ndarray]], model: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Given every worker's payload and the current global model: the new model and the reply."""
        raise NotImplementedError


class Baseline(Method):
    """Every worker pushes all its parameters; the PS averages them and sends the average back."""

    name = "baseline"

    def encode(self, local: LocalModel) -> list[tf.Tensor]:
        return [local.vector()]

    def decode(self, local: LocalModel, payload: list[tf.Tensor]) -> tf.Operation:
        return local.assign(payload[0])

    def aggregate(self, payloads, model):
        average = _average(payloads)
        return average, [average]


class MP2(Method):
    """Workers train and push the front layers only; the PS predicts the rest and sends the model."""

    name = "mp2"
    trains = PUSHED

    def __init__(self, layout: Layout, options: dict | None = None) -> None:
        super().__init__(layout, options)
        self.predict: Callable[[np.ndarray], np.ndarray] | None = None
        self.predict_seconds = 0.0

    def encode(self, local: LocalModel) -> list[tf.Tensor]:
        return [local.vector(PUSHED)]

    def decode(self, local: LocalModel, payload: list[tf.Tensor]) -> tf.Operation:
        return local.assign(payload[0])

    def prepare_ps(self, session, device, ps_options):
        from predictor import Predictor, load_checkpoint

        path = ps_options.get("predictor")
        if not path:
            raise ValueError("--method mp2 needs --predictor PATH (a checkpoint from mp2_train_stage.py)")
        weights, _ = load_checkpoint(path, self.layout)
        with tf.device(device):
            pushed = tf.compat.v1.placeholder(tf.float32, [self.layout.pushed], name="pushed_average")
            net = Predictor(self.layout, weights=weights)
            full = net(pushed)
        session.run(tf.compat.v1.variables_initializer(net.variables))
        self.predict = lambda vector: session.run(full, {pushed: vector})

    def aggregate(self, payloads, model):
        average = _average(payloads)
        start = time.perf_counter()
        full = self.predict(average)
        self.predict_seconds += time.perf_counter() - start
        return full, [full]


def _average(payloads: list[list[np.ndarray]]) -> np.ndarray:
    """The element-wise mean of every worker's first payload tensor."""
    return np.mean([p[0] for p in payloads], axis=0, dtype=np.float32)


METHODS: dict[str, type[Method]] = {m.name: m for m in (Baseline, MP2)}


def build(name: str, layout: Layout, options: dict | None = None) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name](layout, options)
