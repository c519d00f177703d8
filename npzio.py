"""Pickle-free .npz files with JSON metadata, written atomically.

Every file the project writes with arrays in it (PS checkpoints, parameter-dataset shards,
predictor checkpoints, training state) goes through `write`: a temporary file in the same folder,
flushed to disk, then renamed over the target, so a process killed at any moment leaves either the
old file or the new one. Metadata is JSON stored as a uint8 array, so `np.load(...,
allow_pickle=False)` reads everything.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

META_KEY = "__meta__"
# What np.load raises on a truncated, corrupted or foreign file.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def write(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: dict | None = None) -> None:
    path = Path(path)
    entries = dict(arrays)
    if meta is not None:
        text = json.dumps(meta, sort_keys=True, default=_json_default)
        entries[META_KEY] = np.frombuffer(text.encode(), np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict | None]:
    """The arrays and the metadata (None when the file has none); raises READ_ERRORS as np.load does."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    raw = arrays.pop(META_KEY, None)
    return arrays, None if raw is None else json.loads(raw.tobytes().decode())


def _json_default(value):
    if isinstance(value, np.generic):  # numpy scalars (an accuracy, an epoch) in the caller's meta
        return value.item()
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")
