"""Synchronous data parallelism, the baseline most readers mean (DDP, MirroredStrategy, TensorFlow's
ParameterServerStrategy): every worker sends the gradient of its batch, the PS averages them and takes
one Adam step on the global model, and every worker takes that model back. All replicas hold the same
model after every step (`--verify-sync` checks it), unlike the MP² paper's baseline (`baseline`), where
each worker steps its own Adam and the PS averages the models.

The PS's Adam is TensorFlow's (helpers/optim.py's constants, as the workers' local Adam), its learning rate the
same schedule of the global step; its moments are PS state, saved in the checkpoint. The bytes are the
baseline's: the whole model's size up and down every step.
"""
from __future__ import annotations

import tensorflow as tf

from helpers.optim import BETA1, BETA2, MODEL_EPSILON, learning_rate
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
            optimizer = tf.compat.v1.train.AdamOptimizer(learning_rate(self.run.lr, ps.step), beta1=BETA1, beta2=BETA2,
                                                         epsilon=MODEL_EPSILON, name="ps_adam")
            step = optimizer.apply_gradients([(gradient, ps.model)])
        ps.state.extend(optimizer.variables())  # the moments and the clock: saved and restored with the run
        with tf.control_dependencies([step]):
            return {0: PSPhase(reply=[ps.model.read_value()])}
