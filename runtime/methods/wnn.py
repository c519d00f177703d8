"""WNN: baseline training whose global model the PS now and then jumps ahead with the weight nowcaster.

Workers push and receive the whole model as in the baseline. Every `spacing_steps` steps (the
spacing the nowcaster was trained at, from its checkpoint) the PS records the global model; after
every `--jump-every`-th recording (5 in the reference) it replaces the model with the nowcaster's
prediction, which the workers receive in that step's reply. Recording and jumping happen inside the
PS's step run, so they cost no extra round trip.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from helpers import argtypes
from runtime.methods.base import Method, PSContext, PSPhase, PSSide, Whole, WorkerPhase, WorkerSide
from runtime.methods.baseline import average_ps, full_push_worker
from runtime.methods.options import Options, option

AVERAGE, RECORD, JUMP = 0, 1, 2


@dataclass(frozen=True)
class WNNOptions(Options):
    wnn: str | None = option(None, "nowcaster checkpoint (wnn.npz from mp2_train_wnn.py)", ps_only=True)
    jump_every: int = option(5, "jump after every N-th recording of the model", argtypes.positive_int)


class WNN(Method):
    name = "wnn"
    summary = "baseline training; the PS jumps the model ahead with a trained weight nowcaster (mp2_train_wnn.py)"
    Options = WNNOptions
    opts: WNNOptions
    phase_names = {AVERAGE: "average", RECORD: "record", JUMP: "jump"}
    shardable = True  # its own build_pieces: the nowcaster runs on the first PS task over the whole model

    def prepare_ps(self, context: PSContext, dataset, log=print) -> None:
        import wnn

        if not self.opts.wnn:
            raise ValueError("--method wnn needs --wnn PATH (a nowcaster trained with mp2_train_wnn.py)")
        try:
            self.path = self.opts.wnn
            _, meta = wnn.load(self.path)
        except wnn.WnnCheckpointError as e:
            raise ValueError(str(e)) from None
        if meta.get("model") not in (None, self.layout.model):
            raise ValueError(f"{self.path} was trained on {meta.get('model')} trajectories, this run trains {self.layout.model}")
        self.spacing = int(meta.get("spacing_steps") or 0)
        if self.spacing < 1:
            raise ValueError(f"{self.path} was trained on irregular snapshots: its recording spacing is unknown; "
                             f"collect with --snapshot-every K --snapshot-regular and train it again")

    def ps_inputs(self) -> dict:
        return {"wnn": self.path}

    def next_phase(self, step: int) -> int:
        if (step + 1) % self.spacing:
            return AVERAGE
        recordings = (step + 1) // self.spacing
        return JUMP if recordings >= 5 and recordings % self.opts.jump_every == 0 else RECORD

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        same = full_push_worker(w)  # workers do not know about jumps: they take whatever model comes
        return {AVERAGE: same, RECORD: same, JUMP: same}

    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        return self.build_pieces([ps])[0][1]

    def build_pieces(self, sides: list[PSSide]) -> list[tuple[Method, dict[int, PSPhase]]]:
        """Averaging steps piece by piece; recording and jumping on the first piece's task over the pieces' averages
        put together (`Whole`): the nowcaster's products run over runs of the whole model's weights."""
        import wnn

        whole = Whole(self.layout, sides)
        with tf.device(whole.device):
            nowcaster = wnn.Nowcaster(self.layout, self.path, whole.device)
        whole.side.state += nowcaster.variables
        phases: list[dict[int, PSPhase]] = []
        for side in sides:
            with tf.device(side.device):
                phases.append({AVERAGE: average_ps(side)})
        for phase in (RECORD, JUMP):
            average = whole.concat(whole.means(whole.gather(), [s.layout.total for s in sides]))
            with tf.device(whole.device):
                recorded = nowcaster.record_tensor(average)
                if phase == RECORD:
                    with tf.control_dependencies([recorded]):
                        new = tf.identity(average)
                else:
                    new = nowcaster.jumped_after(recorded)
            models, written = whole.write(new)
            for k, piece_phase in enumerate(whole.phases([[m] for m in models], written)):
                phases[k][phase] = piece_phase
        return [(self, p) for p in phases]
