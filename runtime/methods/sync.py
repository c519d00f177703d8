"""Synchronous data parallelism, the baseline most readers mean (DDP, MirroredStrategy, TensorFlow's
ParameterServerStrategy): every worker sends the gradient of its batch, the PS averages them and takes
one Adam step on the global model, and every worker takes that model back. All replicas hold the same
model after every step (`--verify-sync` checks it), unlike the MP² paper's baseline (`baseline`), where
each worker steps its own Adam and the PS averages the models.

The PS's Adam is helpers/optim.py's (the workers' local Adam, with the model's ε), its learning rate the
same schedule of the global step; its moments and step count are PS state, saved in the checkpoint. The bytes are the
baseline's: the whole model's size up and down every step.
"""
from __future__ import annotations

import tensorflow as tf

from helpers.optim import MODEL_EPSILON, Adam, learning_rate
from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, mean


class Sync(Method):
    shardable = True
    name = "sync"
    summary = ("synchronous data parallelism: workers send gradients, the PS averages them and takes one Adam "
               "step, every worker takes the new model")

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        grads = w.gradients(w.local.variables())  # the layout's order, as the flat model vector
        up = [tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)]
        return {0: WorkerPhase(up=up, apply=lambda reply: w.local.assign(reply[0]))}

    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        gradient = mean([p[0] for p in ps.gather()])
        with tf.device(ps.device):
            # The moments and the step count are PS state: saved and restored with the run.
            optimizer = Adam(lr=learning_rate(self.run.lr, ps.step), epsilon=MODEL_EPSILON,
                             make=lambda name, value: ps.variable(f"ps_adam/{name}", value, value.dtype))
            step = optimizer.apply([gradient], [ps.model])
        with tf.control_dependencies([step]):
            return {0: PSPhase(reply=[ps.model.read_value()])}
