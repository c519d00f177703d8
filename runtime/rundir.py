"""The run directory the PS writes: metrics.jsonl, summary.json, the global model checkpoints, and
interruptions.jsonl (each stop a resume can cure: when, why, and the checkpoint it resumes from).

Everything is JSON or a pickle-free .npz written atomically by npzio, so a run killed at any moment
leaves readable files (metrics.jsonl is appended to, a line at a time, and fsynced).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from helpers import npzio


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.npz"
        self.best = self.path / "best.npz"
        self.interruptions_file = self.path / "interruptions.jsonl"

    def record_files(self) -> list[Path]:
        """The files of a run recorded here (the PS's and local workers' records, not the launcher's logs)."""
        patterns = ("metrics.jsonl", "summary.json", "checkpoint.npz", "best.npz", "events.out.tfevents.*",
                    "worker-*.jsonl", "worker-*-state.npz", "worker-*-state.prev.npz", "trace-worker-*.npz", "online",
                    "interruptions.jsonl")
        return sorted({p for pattern in patterns for p in self.path.glob(pattern)})

    def describe_record(self) -> str:
        """What run is recorded here, in a few words ("" for none)."""
        if not self.record_files():
            return ""
        if self.summary.exists():
            try:
                summary = json.loads(self.summary.read_text())
                return f"a finished run ({summary.get('method', '?')}, {summary.get('epochs', '?')} epochs)"
            except (OSError, ValueError):
                pass
        epochs = [r.get("epoch") for r in self.read_metrics_tolerant()]
        return f"a run stopped after epoch {epochs[-1]}" if epochs else "a run that never finished an epoch"

    def read_metrics_tolerant(self) -> list[dict]:
        try:
            return self.read_metrics()
        except (OSError, ValueError):
            return []

    def set_aside(self, files: list[Path] | None = None) -> Path | None:
        """Move an earlier run's record (or `files`) into replaced-<time>/ here; the folder, or None if nothing moved."""
        return npzio.set_aside(self.path, self.record_files() if files is None else files)

    def append_metrics(self, records: list[dict]) -> None:
        _append_lines(self.metrics, records)

    def read_metrics(self) -> list[dict]:
        return _read_lines(self.metrics)

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

    def note_interruption(self, step: int, checkpoint_step: int, cause: str) -> None:
        """A stop that a resume can cure, at global step `step` (0-based, the step under way)."""
        _append_lines(self.interruptions_file, [{"step": step + 1, "resumes_after_step": checkpoint_step, "cause": cause,
                                                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])

    def interruptions(self) -> list[dict]:
        """Every stop of this run that was resumed from (or still can be), in order."""
        return _read_lines(self.interruptions_file)

    def save_checkpoint(self, path: Path, model: np.ndarray, state: dict[str, np.ndarray], meta: dict) -> None:
        """The global model and the method's PS state (optimizer slots, residual history, ...)."""
        npzio.write(path, {"model": model, **state}, meta)

    def load_checkpoint(self, path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
        """(model vector, method state, metadata) of a checkpoint; npzio.NpzError if it is unreadable."""
        arrays, meta = npzio.read(path)
        return arrays.pop("model"), arrays, meta


def _append_lines(path: Path, records: list[dict]) -> None:
    """Append JSON lines, fsynced: a record a crash cannot half-write."""
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
