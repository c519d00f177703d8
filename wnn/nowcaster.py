"""The WNN on the parameter server, in TF compat.v1 graph mode.

The PS records the global model every so often into a ring buffer of the last HISTORY vectors
(a [HISTORY, total] float32 variable plus a count of recordings) and, when the lead's schedule
says so (the reference: after every HISTORY-th recording), replaces the model with `jumped`.

Memory on the PS: HISTORY * total * 4 bytes for the buffer (ResNet-18: 5 * 3,139,274 * 4 = 63 MB;
LeNet-5: 0.9 MB), and while `jumped` runs, one chronological copy of the buffer (the same again)
plus one chunk of network activations (network.DEFAULT_CHUNK weights: about 70 MB).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from models import Layout
from wnn import checkpoint, features, network


class Nowcaster:
    """Graph ops of the WNN for `layout`, with the nowcasters of `checkpoint_path`, on `device`.

        nowcaster = Nowcaster(layout, "wnn.npz", "/job:ps/task:0")
        session.run(nowcaster.initializer)              # or restore nowcaster.variables
        nowcaster.record(session, vector)               # every recording
        if nowcaster.recorded(session) % 5 == 0: vector = nowcaster.jump(session)
    """

    def __init__(self, layout: Layout, checkpoint_path: str, device: str, chunk: int = network.DEFAULT_CHUNK) -> None:
        params, self.meta = checkpoint.load(checkpoint_path)
        self.layout = layout
        total = layout.total
        with tf.device(device), tf.compat.v1.variable_scope("wnn"):
            self.history = tf.compat.v1.get_variable(
                "history", [features.HISTORY, total], tf.float32, tf.compat.v1.zeros_initializer(), trainable=False)
            self.count = tf.compat.v1.get_variable(
                "recorded", [], tf.int64, tf.compat.v1.zeros_initializer(), trainable=False)
            self.variables = [self.history, self.count]
            self.initializer = tf.compat.v1.variables_initializer(self.variables)

            self.vector = tf.compat.v1.placeholder(tf.float32, [total], "vector")
            self.record_op = self.record_tensor(self.vector)

            # Oldest first: once the buffer is full, the oldest row is the next one to overwrite.
            order = (self.count + np.arange(features.HISTORY, dtype=np.int64)) % features.HISTORY
            chronological = tf.gather(self.history, order)
            self._consts = {kind: {k: tf.constant(v) for k, v in p.items()} for kind, p in params.items()}
            self._chunk, self._device = chunk, device
            self.jumped = self._jump(chronological, self._consts, chunk)

    def jumped_after(self, recorded: tf.Operation) -> tf.Tensor:
        """The jumped vector from the history as it is after `recorded` ran (for one-run PS steps)."""
        with tf.device(self._device), tf.control_dependencies([recorded]):
            order = (self.count.read_value() + np.arange(features.HISTORY, dtype=np.int64)) % features.HISTORY
            chronological = tf.gather(self.history.read_value(), order)
        return self._jump(chronological, self._consts, self._chunk)

    def record_tensor(self, vector: tf.Tensor) -> tf.Operation:
        """An op that writes `vector` [total] (a graph tensor) into the ring buffer."""
        row = self.count % features.HISTORY
        write = tf.compat.v1.scatter_update(self.history, row[None], vector[None])
        with tf.control_dependencies([write]):
            return tf.compat.v1.assign_add(self.count, 1).op

    def _jump(self, history: tf.Tensor, params: dict, chunk: int) -> tf.Tensor:
        """The full jumped vector: each kind's tensors through its nowcaster, back in layout order."""
        by_kind: dict[str, list[tuple[int, int]]] = {kind: [] for kind in network.KINDS}
        for spec in self.layout.params:
            by_kind[network.kind_of(spec)].append(self.layout.offset(spec.name))
        pieces: dict[tuple[int, int], tf.Tensor] = {}
        for kind, spans in by_kind.items():
            if not spans:
                continue
            joined = tf.concat([history[:, a:b] for a, b in spans], 1)
            new = network.predict(params[kind], joined, chunk)
            sizes = [b - a for a, b in spans]
            pieces.update(zip(spans, tf.split(new, sizes)))
        return tf.concat([pieces[self.layout.offset(p.name)] for p in self.layout.params], 0)

    # --- conveniences for a PS that holds the model in numpy ------------------------------------
    def record(self, session: tf.compat.v1.Session, vector: np.ndarray) -> None:
        session.run(self.record_op, {self.vector: vector})

    def recorded(self, session: tf.compat.v1.Session) -> int:
        return int(session.run(self.count))

    def jump(self, session: tf.compat.v1.Session) -> np.ndarray:
        """The jumped model vector; refuses before HISTORY recordings (the buffer is not full)."""
        done = self.recorded(session)
        if done < features.HISTORY:
            raise ValueError(f"the WNN needs {features.HISTORY} recordings before a jump, it has {done}")
        return session.run(self.jumped)
