"""When a run saves its state, and the workers' side of it.

A run saves at every epoch end and, with `--checkpoint-every N`, after the first exchanging step at or
past every N-th step: after an exchange every worker holds the PS's model (the digest `--verify-sync`
checks), so the PS's checkpoint and each worker's own state file (optimizer and method state, its
position in the epoch) restore the run exactly. Both sides find the same steps from the method's
schedule alone (`due`).

The two sides write at different moments, so a crash can leave one side a checkpoint ahead. The PS
therefore commits checkpoint c only once it knows every worker has written c: a worker writes its file
right after taking the reply of step c and before its next push, so the PS commits c when it has
gathered the next exchange's pushes (or the epoch's reports). A worker keeps its two latest files; the
PS's committed checkpoint is always one of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import npzio
from runtime.methods.base import Method


def due(method: Method, step: int, every: int, steps_per_epoch: int) -> bool:
    """Whether the run saves after global step `step` (0-based): every epoch end, and with `every` > 0 the
    first exchanging step s with s + 1 >= k·every for each k (a local step never: the models differ)."""
    if (step + 1) % steps_per_epoch == 0:
        return True
    if every <= 0 or method.is_local(step) or step + 1 < every:
        return False
    mark = (step + 1) // every * every  # the last multiple of `every` reached
    return method.next_exchange(mark - 1) == step


class WorkerStateFiles:
    """A worker's saved state: OUT/worker-I-state.npz (the latest) and worker-I-state.prev.npz (the one
    before). Each holds the method's and optimizer's state and, in its metadata, the step it was saved
    after and what the epoch had counted so far."""

    def __init__(self, directory: Path, index: int) -> None:
        self.latest = Path(directory) / f"worker-{index}-state.npz"
        self.previous = Path(directory) / f"worker-{index}-state.prev.npz"
        self.index = index

    @property
    def paths(self) -> list[Path]:
        return [self.latest, self.previous]

    def write(self, step: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Save the state after global step `step` (done: 0..step-1 ... i.e. `step` steps), keeping the last file."""
        if self.latest.exists():
            self.latest.replace(self.previous)
        npzio.write(self.latest, arrays, {**meta, "steps_done": step, "worker": self.index})

    def read(self, steps_done: int) -> tuple[dict[str, np.ndarray], dict]:
        """The state saved once `steps_done` steps were done; ValueError naming what is there if neither has it."""
        found = []
        for path in self.paths:
            try:
                arrays, meta = npzio.read(path)
            except npzio.NpzError as e:
                found.append(f"{path.name}: {e}")
                continue
            held = meta.get("steps_done", meta.get("epoch"))
            if held == steps_done:
                return arrays, meta
            found.append(f"{path.name} is of step {held}")
        raise ValueError(f"no state file of step {steps_done} ({'; '.join(found) or 'none written'})")
