"""WNN checkpoints: the three nowcasters in one pickle-free .npz (`kind:name` arrays) plus metadata.

The metadata says what the nowcasters were trained for: the history length, the spacing of the
recordings (in snapshots of the collecting run, and in training steps when known) and the horizon.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from helpers import npzio
from wnn import features, network

FORMAT = "mp2-wnn"
VERSION = 1


class WnnCheckpointError(Exception):
    """A file that is not a usable WNN checkpoint; the message says what to do."""


def save(path: str | os.PathLike, params: Mapping[str, Mapping[str, np.ndarray]], meta: dict) -> None:
    """Write the nowcasters of every kind (kind -> name -> array) atomically, with `meta`."""
    expected = network.shapes()
    arrays = {}
    for kind in network.KINDS:
        for name, shape in expected.items():
            value = np.asarray(params[kind][name], np.float32)
            if value.shape != shape:
                raise ValueError(f"{kind} nowcaster: {name} has shape {value.shape}, expected {shape}")
            arrays[f"{kind}:{name}"] = value
    header = {"format": FORMAT, "version": VERSION, "kinds": list(network.KINDS), "history": features.HISTORY}
    npzio.write(path, arrays, {**meta, **header})


def load(path: str | os.PathLike) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """(kind -> name -> array, meta) of a WNN checkpoint; WnnCheckpointError for anything else."""
    if not os.path.isfile(path):
        raise WnnCheckpointError(f"WNN checkpoint {path} does not exist; train one with mp2_train_wnn.py")
    try:
        arrays, meta = npzio.read(path)
    except (npzio.NpzError, UnicodeDecodeError, AttributeError) as e:
        raise WnnCheckpointError(f"{path} is not a readable WNN checkpoint ({type(e).__name__}: {e}); "
                                 f"write it again with mp2_train_wnn.py") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise WnnCheckpointError(f"{path} is not a WNN checkpoint (format {found!r}); pass a wnn.npz written "
                                 f"by mp2_train_wnn.py")
    if meta.get("version") != VERSION or meta.get("history") != features.HISTORY:
        raise WnnCheckpointError(f"{path} is version {meta.get('version')!r} with a history of {meta.get('history')!r}; "
                                 f"this code reads version {VERSION} with {features.HISTORY}: retrain it with mp2_train_wnn.py")
    params: dict[str, dict[str, np.ndarray]] = {}
    problems = []
    for kind in network.KINDS:
        params[kind] = {}
        for name, shape in network.shapes().items():
            value = arrays.get(f"{kind}:{name}")
            if value is None or value.shape != shape or not np.all(np.isfinite(value)):
                problems.append(f"{kind}:{name} is missing, misshapen or not finite")
            else:
                params[kind][name] = value.astype(np.float32, copy=False)
    if problems:
        raise WnnCheckpointError(f"{path} is damaged: {'; '.join(problems[:3])}; retrain it with mp2_train_wnn.py")
    return params, meta
