"""A worker's own copy of the model: one variable per layout tensor, on the worker's device."""
from __future__ import annotations

import tensorflow as tf

from models import Model


class LocalModel:
    def __init__(self, model: Model, device: str) -> None:
        self.model = model
        self.layout = model.layout
        with tf.device(device):
            # Zeros here; the real values arrive from the PS in the welcome message, so every
            # worker starts from the PS's model (fresh or resumed) and no large constant lands
            # in the graph.
            self.vars = {
                p.name: tf.Variable(tf.zeros(p.shape), name=p.name.replace("/", "_"))
                for p in self.layout.params
            }

    def vector(self, group: str | None = None) -> tf.Tensor:
        """The parameters (all, or one group) as one flat vector."""
        return self.layout.flatten(self.vars, group)

    def assign(self, vector: tf.Tensor, group: str | None = None) -> tf.Operation:
        """Overwrite the parameters (all, or one group) from a flat vector."""
        parts = self.layout.unflatten(vector, group)
        return tf.group(*[self.vars[name].assign(value) for name, value in parts.items()])

    def variables(self, group: str | None = None) -> list[tf.Variable]:
        specs = self.layout.params if group is None else self.layout.group(group)
        return [self.vars[p.name] for p in specs]
