"""The project's one writer and reader of files: pickle-free .npz with JSON metadata, JSON, bytes.

Every file the project writes (PS checkpoints, parameter-dataset shards and manifests, predictor
checkpoints, training state, reports, summaries) goes through `write`, `write_json` or
`write_bytes`: a temporary file in the same folder, flushed to disk, then renamed over the target,
so a process killed at any moment leaves either the old file or the new one. In an .npz the
metadata is JSON stored as a uint8 array, so `np.load(..., allow_pickle=False)` reads everything.
Every .npz is read with `read`, whose only error is `NpzError`.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

META_KEY = "__meta__"


class NpzError(Exception):
    """An .npz file that cannot be read: missing, damaged or truncated, or holding pickled objects."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path, self.problem = str(path), problem


# What np.load raises on a truncated, corrupted or foreign file.
_NUMPY_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)


def write(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: dict | None = None) -> None:
    """Arrays (and JSON metadata) as one pickle-free .npz, atomically."""
    entries = dict(arrays)
    if meta is not None:
        text = json.dumps(meta, sort_keys=True, default=_json_default)
        entries[META_KEY] = np.frombuffer(text.encode(), np.uint8)
    _replace(Path(path), lambda f: np.savez(f, **entries))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`data` as the whole content of `path`, atomically."""
    _replace(Path(path), lambda f: f.write(data))


def write_json(path: str | os.PathLike, value: Any) -> None:
    """`value` as indented JSON with sorted keys, atomically; numpy scalars become numbers."""
    write_bytes(path, (json.dumps(value, indent=1, sort_keys=True, default=_json_default) + "\n").encode())


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict | None]:
    """The arrays and the metadata (None when the file has none); raises NpzError saying what is wrong."""
    if not os.path.exists(path):
        raise NpzError(path, "does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise NpzError(path, "is a single .npy array, not an .npz archive")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
        raw = arrays.pop(META_KEY, None)
        if raw is not None and (raw.dtype != np.uint8 or raw.ndim != 1):
            raise NpzError(path, f"is damaged: its {META_KEY} entry is not JSON text")
        meta = None if raw is None else json.loads(raw.tobytes().decode())
    except ValueError as e:
        if str(e).startswith("Object arrays"):  # numpy's refusal of an entry that needs unpickling
            raise NpzError(path, "holds pickled object arrays, which this project refuses to load") from None
        if "pickled data" in str(e):  # neither .npz nor .npy: numpy would have tried it as a pickle
            raise NpzError(path, "is damaged or truncated (not an .npz archive)") from None
        raise NpzError(path, f"is damaged or truncated ({type(e).__name__}: {e})") from None
    except _NUMPY_READ_ERRORS as e:
        raise NpzError(path, f"is damaged or truncated ({type(e).__name__}: {e})") from None
    return arrays, meta


def _replace(path: Path, fill: Callable[[Any], object]) -> None:
    """Write through `fill(file)` to a temporary file beside `path`, flush it to disk, rename it over."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(value):
    if isinstance(value, np.generic):  # numpy scalars (an accuracy, an epoch) in the caller's values
        return value.item()
    raise TypeError(f"value {value!r} is not JSON-serialisable")
