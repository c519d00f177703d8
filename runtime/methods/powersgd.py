"""PowerSGD: rank-R gradient compression in two exchanges per step (compression/powersgd.py).

Exchange 1: every worker sends P = M·Q of every matrix and the 1-D gradients; the PS replies with
P̂ (Gram–Schmidt of the mean) and the 1-D means. Exchange 2: every worker sends Q = Mᵀ·P̂; the PS
replies with the mean Q̄. Then the PS applies the optimizer to the global model with the gradient
P̂·Q̄ᵀ, and every worker applies the same step to its own copy with the same ops on the same values,
as Top-k and DGC do (helpers/optim.py), so the models stay equal bit for bit and the reply
never carries the model.

The optimizer is Adam on both sides (as Top-k here); the reference trains with SGD and Nesterov
momentum 0.9 on the decompressed gradient. Adam at lr 0.003 is what this project's LeNet-5 runs use.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from helpers import argtypes
from helpers.optim import FlatOptimizer, learning_rate
from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, mean
from runtime.methods.options import Options, option


@dataclass(frozen=True)
class PowerSGDOptions(Options):
    rank: int = option(2, "rank of each gradient matrix's approximation (2: the tuned frontier's row, results/frontier)",
                       argtypes.int_in(1, 4))


class PowerSGD(Method):
    name = "powersgd"
    summary = "PowerSGD: rank-R P and Q of every gradient matrix in two exchanges per step (error feedback); PS Adam"
    Options = PowerSGDOptions
    opts: PowerSGDOptions
    optimizer = "adam"
    default_lr = 0.003  # the tuned frontier's choice for rank 2 at 30 epochs (0.006 at 10; results/frontier)

    def plan(self):
        from compression.powersgd import Plan

        return Plan([p.shape for p in self.layout.params], self.opts.rank)

    # --- worker ---------------------------------------------------------------------------------
    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        from compression.powersgd import PowerSGD as Compressor

        compressor = Compressor([p.shape for p in self.layout.params], self.opts.rank, self.run.seed, w.device)
        w.state += compressor.variables
        w.scratches += compressor.scratch
        with tf.device(w.device):
            optimizer = FlatOptimizer(self.optimizer, self.layout.total, w.variable, w.scratch)

        def second(reply: list[tf.Tensor]) -> list[tf.Tensor]:
            return [compressor.second_payload(reply[0])]

        def apply(reply: list[tf.Tensor]) -> tf.Operation:
            gradient, update = compressor.finish(reply[0])
            new, slots = optimizer.apply(w.local.vector(), gradient, learning_rate(self.run.lr, w.step), w.step)
            return tf.group(w.local.assign(new), *slots, update)

        return {0: WorkerPhase(up=[compressor.first_payload(w.gradients())], apply=apply, then=(second,))}

    # --- PS -------------------------------------------------------------------------------------
    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        plan = self.plan()
        # Exchange 1: P̂ and the 1-D means, kept for exchange 2 (another session run).
        first = plan.orthonormalise(mean([p[0] for p in ps.gather()]))
        kept = ps.scratch("powersgd_first_reply", tf.zeros([plan.first_size]))
        with tf.control_dependencies([kept.assign(first)]):
            reply = [tf.identity(first)]
        # Exchange 2: Q̄, then the optimizer step with P̂·Q̄ᵀ.
        second = mean([p[0] for p in ps.gather()])
        gradient = plan.decompress(kept.read_value(), second)
        with tf.device(ps.device):
            optimizer = FlatOptimizer(self.optimizer, self.layout.total, ps.variable, ps.scratch)
        new, slots = optimizer.apply(ps.model, gradient, learning_rate(self.run.lr, ps.step), ps.step)
        with tf.control_dependencies([ps.model.assign(new), *slots]):
            return {0: PSPhase(reply=reply, then=([tf.identity(second)],))}
