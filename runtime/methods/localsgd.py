"""Local SGD (periodic model averaging), with DiLoCo's optional outer Nesterov step on the PS.

Workers train with their own local Adam on every step, as the baseline's, and its state stays on
the worker. Only every `--sync-every`-th step, and the last step of every epoch, exchanges: workers
push their whole model, the PS averages and replies with the global model. The epoch-end sync means
the PS evaluates the workers' average at every epoch end, as it does for every other method (the
comparison reads accuracy at epoch ends), and a resume starts from a model every worker shares;
its bytes are counted like any other sync's.

The outer step (Douillard et al., DiLoCo, 2023): the PS takes (previous global model − the workers'
average) as an outer gradient g and applies Nesterov momentum as torch.optim.SGD(nesterov=True) does:
v ← μ·v + g; θ ← θ − lr·(g + μ·v). `--outer-lr 1 --outer-momentum 0` is plain averaging and is
computed as such (the mean itself, not θ − (θ − mean), which may differ in the last bit).
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from helpers import argtypes
from runtime.methods.base import Method, PSPhase, PSSide, WorkerPhase, WorkerSide, mean, outer_step, syncs_at
from runtime.methods.baseline import average_ps, full_push_worker
from runtime.methods.options import Options, option


@dataclass(frozen=True)
class LocalSGDOptions(Options):
    sync_every: int = option(64, "steps between model averagings (H; the last step of every epoch syncs too). 64: the "
                             "tuned frontier's best of the family on LeNet-5/Fashion-MNIST at 30 epochs (plain averaging at "
                             "H=64 and lr 0.006: 0.8961 test accuracy at the best validation epoch, as DiLoCo's outer step "
                             "at H=64 and H=16's plain averaging within 0.0005, at a third of H=16's bytes; results/frontier)",
                             argtypes.positive_int)
    outer_lr: float = option(1.0, "DiLoCo's outer learning rate (1 with momentum 0: plain averaging, the tuned "
                             "frontier's best; the paper uses 0.7 with momentum 0.9, and the frontier chose 0.35 with it at "
                             "H=16 and H=64, 0.0005 below plain averaging at H=64; results/frontier)", argtypes.positive_float)
    outer_momentum: float = option(0.0, "DiLoCo's outer Nesterov momentum (the paper uses 0.9)", argtypes.fraction)


class LocalSGD(Method):
    shardable = True
    name = "localsgd"
    summary = "local Adam on every worker; every H-th step and at epoch ends the PS averages the models"
    Options = LocalSGDOptions
    opts: LocalSGDOptions
    phase_names = {0: "sync"}
    default_lr = 0.006  # the tuned frontier's choice for H=16 and H=64 at 30 epochs (×2 of the baseline's 0.003)

    def is_local(self, step: int) -> bool:
        return not syncs_at(step, self.run.steps_per_epoch, self.opts.sync_every)

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        return {0: full_push_worker(w)}

    def build_local(self, w: WorkerSide) -> tf.Operation:
        return w.adam(w.local.variables())  # the same optimizer (slots, clock) as the sync steps' training

    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        lr, momentum = self.opts.outer_lr, self.opts.outer_momentum
        if lr == 1.0 and momentum == 0.0:
            return {0: average_ps(ps)}
        velocity = ps.variable("outer_velocity", tf.zeros([ps.layout.total])) if momentum > 0.0 else None
        new, updates = outer_step(ps.model, mean([p[0] for p in ps.gather()]), lr, momentum, velocity)
        with tf.control_dependencies([ps.model.assign(new), *updates]):
            return {0: PSPhase(reply=[tf.identity(new)])}
