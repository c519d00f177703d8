"""The parameter dataset the predictor trains on: loading with checks, and the train/held-out split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import paramset
from data.loader import canonical_name
from data.errors import DataError
from models import Layout


class StageError(Exception):
    """A problem with the inputs of the training stage; the message says what to do."""


def load(directories: list[str], layout: Layout, dataset: str, cross_dataset: bool) -> paramset.Snapshots:
    """Every snapshot of `directories`, checked to fit `layout` and to come from `dataset`.

    Raises StageError (missing directory, another dataset, fewer than 2 snapshots, non-finite
    values) or paramset.ParamSetError (another model or class count, a damaged shard, no manifest).
    """
    for d in directories:
        if not Path(d).exists():
            raise StageError(f"snapshot directory {d} does not exist (collect one with mp2_local.py "
                             f"--method baseline --snapshot-every K; its snapshots are in <out>/snapshots)")
        if not Path(d).is_dir():
            raise StageError(f"--snapshots {d} is not a directory")
    snaps = paramset.read(directories, layout)
    theirs = sorted({_canonical(s) for s in snaps.dataset.split(",") if s})
    if theirs != [dataset] and not cross_dataset:
        raise StageError(
            f"the snapshots in {', '.join(directories)} were collected on {', '.join(theirs)}, but "
            f"--dataset is {dataset}: pass --dataset {theirs[0]}, or --cross-dataset to train the "
            f"predictor with {dataset} images on purpose"
        )
    if len(snaps) < 2:
        raise StageError(
            f"{', '.join(directories)} hold{'s' if len(directories) == 1 else ''} {len(snaps)} snapshot; "
            f"at least 2 are needed (one to train on, one held out): collect more (--snapshot-every smaller)"
        )
    for part, values in (("pushed", snaps.pushed), ("predicted", snaps.predicted)):
        bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
        if len(bad):
            r = snaps.records[bad[0]]
            raise StageError(
                f"{len(bad)} snapshot(s) hold NaN or infinity in the {part} group, the first one row "
                f"{r.get('row')} of {r.get('source')}/{r.get('shard')} (step {r.get('step')}): "
                f"the collecting run diverged; collect again"
            )
    return snaps


def _canonical(name: str) -> str:
    try:
        return canonical_name(name)
    except DataError:
        return name


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # snapshot indices
    heldout: np.ndarray


def split(n: int, holdout: float, seed: int) -> Split:
    """A seeded random split; round(holdout * n) held out, at least 1, and at least 1 left to train."""
    held = min(n - 1, max(1, int(round(holdout * n))))
    order = np.random.default_rng([seed, 7]).permutation(n)  # 7: its own stream, apart from the rest
    return Split(train=np.sort(order[held:]), heldout=np.sort(order[:held]))
