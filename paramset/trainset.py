"""The parameter dataset a predictor (or the WNN) trains on: loading with checks, and the train/held-out split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.loader import canonical_name
from models import Layout
from paramset.store import ParamSetError, Snapshots, read


def load(directories: list[str], layout: Layout, dataset: str, cross_dataset: bool,
         minimum: int = 2, flag: str = "--snapshots") -> Snapshots:
    """Every snapshot of `directories`, checked to fit `layout` and to come from `dataset`.

    Raises ParamSetError, whose message says what to do: a missing directory, another model or class
    count, another dataset (unless `cross_dataset`), no manifest or a damaged shard, fewer than
    `minimum` snapshots, non-finite values. `flag` names the option the directories came from.
    """
    for d in directories:
        if not Path(d).exists():
            raise ParamSetError(f"snapshot directory {d} does not exist (collect one with mp2_local.py "
                                f"--method baseline --snapshot-every K; its snapshots are in <out>/snapshots)")
        if not Path(d).is_dir():
            raise ParamSetError(f"{flag} {d} is not a directory")
    snaps = read(directories, layout)
    theirs = sorted({_canonical(s) for s in snaps.dataset.split(",") if s})
    if theirs != [dataset] and not cross_dataset:
        raise ParamSetError(
            f"the snapshots in {', '.join(directories)} were collected on {', '.join(theirs)}, but "
            f"--dataset is {dataset}: pass --dataset {theirs[0]}, or --cross-dataset to train the "
            f"predictor with {dataset} images on purpose"
        )
    if len(snaps) < minimum:
        need = "one to train on, one held out" if minimum == 2 else "to train on"
        raise ParamSetError(
            f"{', '.join(directories)} hold{'s' if len(directories) == 1 else ''} {len(snaps)} snapshot; "
            f"at least {minimum} {'are' if minimum > 1 else 'is'} needed ({need}): collect more "
            f"(--snapshot-every smaller)"
        )
    for part, values in (("pushed", snaps.pushed), ("predicted", snaps.predicted)):
        bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
        if len(bad):
            r = snaps.records[bad[0]]
            raise ParamSetError(
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
    train: np.ndarray  # snapshot indices, ascending
    heldout: np.ndarray


def split(steps: list[int], holdout: float) -> Split:
    """Hold out the last `holdout` fraction of the trajectory: the snapshots of the greatest steps.

    Neighbouring snapshots of one run are nearly the same network, so a random pick would test the
    predictor on near-copies of its training data; a contiguous tail does not. round(holdout * n)
    are held out, at least 1 when holdout > 0 and none when it is 0; at least 1 is left to train.
    Equal steps (several runs) keep their order, so the split is the same every time.
    """
    n = len(steps)
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout is a fraction in [0, 1), got {holdout}")
    held = 0 if holdout == 0 else min(n - 1, max(1, int(round(holdout * n))))
    by_step = np.argsort(np.asarray(steps, np.int64), kind="stable")
    return Split(train=np.sort(by_step[:n - held]), heldout=np.sort(by_step[n - held:]))


def steps_of(snaps: Snapshots) -> list[int]:
    """The global step of every snapshot; ParamSetError if a record has none."""
    steps = [r.get("step") for r in snaps.records]
    missing = [i for i, s in enumerate(steps) if not isinstance(s, int)]
    if missing:
        r = snaps.records[missing[0]]
        raise ParamSetError(f"{len(missing)} snapshot(s) have no step number, the first one row {r.get('row')} of "
                            f"{r.get('source')}/{r.get('shard')}: collect them again with mp2_local.py")
    return steps
