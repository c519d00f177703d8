"""A worker's graph: local training, and its end of the wire to the PS."""
from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from models import Model
from runtime import deadline
from runtime.local_model import LocalModel
from runtime.methods import Method
from runtime.wire import Wire, nbytes


NOTICE_MARGIN = 20.0  # seconds


class RunStopped(Exception):
    """The run cannot go on: the PS refused this worker, stopped the run, or vanished."""


class WorkerGraph:
    def __init__(self, model: Model, method: Method, wire: Wire, index: int, lr: float, decay_steps: int = 50, decay_rate: float = 0.999) -> None:
        self.index, self.wire, self.layout = index, wire, model.layout
        device = f"/job:worker/task:{index}"
        self.local = LocalModel(model, device)
        h, w, c = model.input_shape
        with tf.device(device):
            self.images = tf.compat.v1.placeholder(tf.float32, [None, h, w, c], name="images")
            self.labels = tf.compat.v1.placeholder(tf.float32, [None, model.classes], name="soft_labels")
            self.logits = model.forward(self.local.vars, self.images)
            self.loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=self.labels, logits=self.logits))
            hits = tf.equal(tf.argmax(self.logits, 1), tf.argmax(self.labels, 1))
            self.accuracy = tf.reduce_mean(tf.cast(hits, tf.float32))
            self.predictions = tf.argmax(self.logits, 1)
            # Local Adam with the reference's staircase decay; optimizer state never leaves the worker.
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="local_step")
            rate = tf.compat.v1.train.exponential_decay(lr, self.step, decay_steps, decay_rate, staircase=True)
            optimizer = tf.compat.v1.train.AdamOptimizer(rate)
            self.train_op = optimizer.minimize(self.loss, global_step=self.step, var_list=self.local.variables(method.trains))
            self.init_op = tf.compat.v1.variables_initializer(
                self.local.variables() + [self.step] + optimizer.variables()
            )
            # The wire: what this worker sends and how it applies the reply.
            payload_up = method.encode(self.local)
            self.push_op = wire.up[index].enqueue(payload_up)
            self.push_bytes = nbytes(payload_up)
            payload_down = wire.down[index].dequeue()
            payload_down = payload_down if isinstance(payload_down, list) else [payload_down]
            with tf.control_dependencies([method.decode(self.local, payload_down)]):
                self.pull_bytes = tf.identity(nbytes(payload_down))

            self.config_json = tf.compat.v1.placeholder(tf.string, [])
            self.hello_op = wire.hello.enqueue([tf.constant(index, tf.int32), self.config_json])
            self.welcome = wire.welcome[index].dequeue()
            self.model_feed = tf.compat.v1.placeholder(tf.float32, [self.layout.total])
            self.load_model = self.local.assign(self.model_feed)
            self.start_step = tf.compat.v1.placeholder(tf.int64, [])
            self.set_step = self.step.assign(self.start_step)
            self.record = tf.compat.v1.placeholder(tf.string, [])
            self.report_op = wire.report[index].enqueue([self.record])
            self.notice = wire.notice[index].dequeue()

    # --- lifecycle ---------------------------------------------------------------------------
    def join(self, session: tf.compat.v1.Session, config_json: str, timeout: float) -> int:
        """Introduce this worker to the PS and take its model; returns the step to start from."""
        session.run(self.init_op)  # local variables only: PS-side state belongs to the PS
        self._run(session, self.hello_op, {self.config_json: config_json}, timeout, "sending hello to the PS")
        verdict, model, start = self._run(session, self.welcome, None, timeout, "waiting to be admitted by the PS")
        verdict = json.loads(verdict.decode())
        if verdict["status"] != "ok":
            raise RunStopped(f"the PS refused this worker: {verdict['reason']}")
        session.run([self.load_model, self.set_step], {self.model_feed: model, self.start_step: start})
        return int(start)

    def report(self, session: tf.compat.v1.Session, record: dict, timeout: float) -> None:
        self._run(session, self.report_op, {self.record: json.dumps(record)}, timeout, "reporting to the PS")

    # --- one step -----------------------------------------------------------------------------
    def train(self, session: tf.compat.v1.Session, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        _, loss, acc = session.run([self.train_op, self.loss, self.accuracy], {self.images: images, self.labels: labels})
        return float(loss), float(acc)

    def push(self, session: tf.compat.v1.Session, timeout: float) -> int:
        """Send this step's payload; returns its bytes."""
        _, sent = self._run(session, [self.push_op, self.push_bytes], None, timeout, "pushing to the PS")
        return int(sent)

    def pull(self, session: tf.compat.v1.Session, timeout: float) -> int:
        """Wait for the PS's reply to this step and apply it; returns its bytes.

        The PS judges which worker is missing within `timeout`; a worker waits a little longer,
        so that the PS's notice naming the culprit reaches it before its own deadline passes.
        """
        return int(self._run(session, self.pull_bytes, None, timeout + NOTICE_MARGIN, "waiting for the PS's reply"))

    def predict(self, session: tf.compat.v1.Session, images: np.ndarray, batch: int = 1000) -> np.ndarray:
        return np.concatenate(
            [session.run(self.predictions, {self.images: images[i : i + batch]}) for i in range(0, len(images), batch)]
        )

    # --- errors -------------------------------------------------------------------------------
    def _run(self, session, fetches, feed, timeout: float, what: str):
        try:
            return deadline.run(session, fetches, feed, seconds=timeout, what=what)
        except tf.errors.DeadlineExceededError:
            raise RunStopped(f"{what}: no answer within {timeout:.0f} s (the PS is slow, stuck or gone)") from None
        except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
            raise RunStopped(self._notice(session)) from None
        except tf.errors.UnavailableError as e:
            raise RunStopped(f"{what}: lost the connection to the PS ({e.message.splitlines()[0]})") from None

    def _notice(self, session: tf.compat.v1.Session) -> str:
        try:
            (text,) = deadline.run(session, [self.notice], seconds=5, what="reading the PS's notice")
            return f"the PS stopped the run: {text.decode()}"
        except tf.errors.OpError:
            return "the PS stopped the run (no reason given; see the PS's log)"
