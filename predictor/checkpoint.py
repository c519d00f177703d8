"""Predictor checkpoints: one .npz of float32 arrays plus JSON metadata; never pickle.

The metadata names the target model, class count and layout fingerprint, so a predictor trained
for one model is refused (with both named) instead of silently producing garbage for another.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from helpers import npzio
from models.layout import Layout
from predictor.structure import (
    FAITHFUL_HEAD_RANK, infer_dense_rank, infer_head_rank, infer_stage, weight_problems, weight_specs,
)

FORMAT = "mp2-predictor"
VERSION = 2  # 2: the push set is part of the checkpoint
META_KEY = npzio.META_KEY


class CheckpointError(Exception):
    """A predictor checkpoint is missing, unreadable, or made for another model."""


def save_checkpoint(
    path: str, layout: Layout, weights: Mapping[str, np.ndarray], meta: dict | None = None
) -> None:
    """Write the predictor weights for `layout` to `path` atomically (tmp file + os.replace)."""
    stage, rank, dense_rank = infer_stage(weights), infer_head_rank(weights), infer_dense_rank(weights)
    problems = weight_problems(weights, weight_specs(layout, stage, rank, dense_rank))
    if problems:
        raise ValueError(f"cannot save a predictor for {layout.model}: " + "; ".join(problems))
    header = {
        "format": FORMAT,
        "version": VERSION,
        "model": layout.model,
        "classes": layout.classes,
        "fingerprint": layout.fingerprint(),
        "pushed_layers": layout.pushed_layers(),
        "input_stage": stage,
        "head_rank": rank,
        "dense_rank": dense_rank,
    }
    clash = [k for k in (meta or {}) if k in header and meta[k] != header[k]]
    if clash:
        raise ValueError(f"meta may not override {', '.join(clash)}")
    info = {**(meta or {}), **header}
    npzio.write(path, {name: np.asarray(v, np.float32) for name, v in weights.items()}, info)


CHECKPOINT_NAME = "predictor.npz"  # what mp2_train_stage.py writes in its --out directory


def resolve_path(path: str) -> str:
    """A checkpoint path as the user gave it: the file, or a stage output directory holding one."""
    given = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(given):
        inside = os.path.join(given, CHECKPOINT_NAME)
        if not os.path.isfile(inside):
            raise CheckpointError(
                f"{given} is a directory without {CHECKPOINT_NAME}: pass the output directory of a "
                f"finished mp2_train_stage.py run, or the checkpoint file itself"
            )
        return inside
    if not os.path.isfile(given):
        raise CheckpointError(
            f"predictor checkpoint {given} does not exist (looked for a file, or a directory holding "
            f"{CHECKPOINT_NAME}); train one with mp2_train_stage.py or pass the path of an existing one"
        )
    return given


def read_meta(path: str) -> dict:
    """The checkpoint's metadata (model, classes, fingerprint, input stage, training info)."""
    return _read(path)[1]


def is_trained(meta: Mapping) -> bool:
    """Whether a checkpoint's metadata says it holds a trained predictor (at least one training epoch).

    mp2_train_stage.py writes `trained_epochs` >= 1; a checkpoint without it (an older or foreign
    file) or with 0 is not to be reused as a trained predictor.
    """
    epochs = meta.get("trained_epochs")
    return isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1


def load_checkpoint(path: str, layout: Layout) -> tuple[dict[str, np.ndarray], dict]:
    """(weights, meta) of a predictor checkpoint made for exactly this layout."""
    weights, meta = _read(path)
    ours = (layout.model, layout.classes, layout.fingerprint())
    theirs = (meta.get("model"), meta.get("classes"), meta.get("fingerprint"))
    if ours != theirs:
        raise CheckpointError(
            f"{path} was trained for {theirs[0]} with {theirs[1]} classes (layout {theirs[2]}), "
            f"but this run uses {ours[0]} with {ours[1]} classes (layout {ours[2]}); retrain it with "
            f"mp2_train_stage.py --model {ours[0]} on a {ours[1]}-class dataset, or pass the "
            f"predictor trained for this model"
        )
    if meta.get("pushed_layers") != layout.pushed_layers():
        raise CheckpointError(
            f"{path} predicts from the pushed layers {', '.join(meta.get('pushed_layers') or [])}, but this "
            f"run pushes {', '.join(layout.pushed_layers())}; pass the --push the predictor was trained "
            f"with, or train one for this push set (mp2_train_stage.py --push ...)"
        )
    stage = meta.get("input_stage")
    if stage not in ("vector", "grid") or infer_stage(weights) != stage:
        raise CheckpointError(f"{path}: input stage {stage!r} does not match its weights; retrain it")
    # Checkpoints written before the head rank existed are all of the faithful rank.
    rank = meta.get("head_rank", FAITHFUL_HEAD_RANK)
    if type(rank) is not int or rank < 1 or infer_head_rank(weights) != rank:
        raise CheckpointError(f"{path}: head rank {rank!r} does not match its weights; retrain it")
    # Checkpoints written before the dense rank existed have the reference's dense heads.
    dense_rank = meta.get("dense_rank")
    if dense_rank != infer_dense_rank(weights):
        raise CheckpointError(f"{path}: dense rank {dense_rank!r} does not match its weights; retrain it")
    try:
        specs = weight_specs(layout, stage, rank, dense_rank)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}; retrain it") from None
    problems = weight_problems(weights, specs)
    bad = [n for n, v in weights.items() if not np.all(np.isfinite(v))]
    problems += [f"weight {n} contains NaN or infinity" for n in bad]
    if problems:
        raise CheckpointError(
            f"{path} does not hold a valid {stage}-stage, head-rank-{rank} predictor for {layout.model}: "
            + "; ".join(problems) + f"; retrain it with mp2_train_stage.py --model {layout.model}"
        )
    return weights, meta


def _read(path: str) -> tuple[dict[str, np.ndarray], dict]:
    # Every entry is read (and so CRC-checked) even for read_meta: a damaged file should fail the
    # same way whichever function meets it first; predictor files are small (megabytes).
    if not os.path.isfile(path):
        raise CheckpointError(
            f"predictor checkpoint {path} does not exist; train one with mp2_train_stage.py "
            f"or pass the path of an existing one"
        )
    try:
        arrays, meta = npzio.read(path)
    except npzio.NpzError as e:
        raise CheckpointError(f"{e}: not a readable MP² predictor checkpoint; write it again with mp2_train_stage.py") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not an MP² predictor checkpoint (no {META_KEY} object); "
                              f"pass a file written by mp2_train_stage.py")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an MP² predictor checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is version {meta.get('version')!r} of the predictor format; this code reads "
            f"version {VERSION}: retrain it with mp2_train_stage.py"
        )
    return arrays, meta
