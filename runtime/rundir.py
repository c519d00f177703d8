"""The run directory the PS writes: metrics.jsonl, summary.json and the global model checkpoints.

Everything is JSON or a pickle-free .npz written atomically by npzio, so a run killed at any moment
leaves readable files (metrics.jsonl is appended to, a line at a time, and fsynced).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import npzio


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.npz"
        self.best = self.path / "best.npz"

    def append_metrics(self, records: list[dict]) -> None:
        with open(self.metrics, "a") as f:
            for r in records:
                f.write(json.dumps(r, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def keep_metrics_through(self, epoch: int) -> list[dict]:
        """On resume: drop lines of epochs after the checkpoint (they will be run again)."""
        kept = [r for r in self.read_metrics() if r["epoch"] <= epoch]
        npzio.write_bytes(self.metrics, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode())
        return kept

    def start(self, resumed_through: int | None) -> list[dict]:
        """Begin the run's record: a fresh run starts an empty one; a resumed run keeps its epochs so far.

        Called once every worker has joined, so a run that cannot start leaves an old record intact.
        """
        if resumed_through is None:
            for stale in (self.metrics, self.summary, self.best):
                stale.unlink(missing_ok=True)
            return []
        return self.keep_metrics_through(resumed_through)

    def save_checkpoint(self, path: Path, model: np.ndarray, state: dict[str, np.ndarray], meta: dict) -> None:
        """The global model and the method's PS state (optimizer slots, residual history, ...)."""
        npzio.write(path, {"model": model, **state}, meta)

    def load_checkpoint(self, path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
        """(model vector, method state, metadata) of a checkpoint; npzio.NpzError if it is unreadable."""
        arrays, meta = npzio.read(path)
        return arrays.pop("model"), arrays, meta
