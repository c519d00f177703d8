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
import time
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
    _check_magic(path)
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
        raise NpzError(path, f"is damaged or truncated ({type(e).__name__}: {e})") from None
    except _NUMPY_READ_ERRORS as e:
        raise NpzError(path, f"is damaged or truncated ({type(e).__name__}: {e})") from None
    return arrays, meta


# The first bytes of a zip archive (an .npz; an empty one starts with its end record) and of an .npy file.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _check_magic(path: str | os.PathLike) -> None:
    """Refuse a file that is neither an .npz nor an .npy before numpy sees it: numpy would take it for a
    pickle and advise loading it unsafely, which is wrong (it is not one) and against this project's rule."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise NpzError(path, f"cannot be read ({e.strerror or e})") from None
    if head.startswith(_ZIP_MAGIC) or head.startswith(_NPY_MAGIC):
        return
    if not head:
        raise NpzError(path, "is empty (0 bytes), not an .npz file")
    text = head.decode(errors="ignore")  # the 64 bytes may end inside a character
    if text and all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        raise NpzError(path, f"is not an .npz file (its first bytes look like text: {text[:32]!r})")
    raise NpzError(path, f"is not an .npz file (it starts with {head[:8]!r}, not a zip archive's signature)")


def _replace(path: Path, fill: Callable[[Any], object]) -> None:
    """Write through `fill(file)` to a temporary file beside `path`, flush it to disk, rename it over.

    An OSError (a full disk, a folder that cannot be written) names `path`, not the temporary file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, os.fspath(path)) from None  # keeps the subclass, e.g. FileNotFoundError
        raise


def _json_default(value):
    if isinstance(value, np.generic):  # numpy scalars (an accuracy, an epoch) in the caller's values
        return value.item()
    raise TypeError(f"value {value!r} is not JSON-serialisable")


def under(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of `arrays` whose names start with `prefix`, renamed without it (a checkpoint's section)."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def set_aside(directory: str | os.PathLike, files: list[Path]) -> Path | None:
    """Move the `files` that exist into a new DIRECTORY/replaced-<time>/ (an earlier run's record, never
    overwritten); the folder, or None if nothing was there to move."""
    directory, files = Path(directory), [f for f in files if f.exists()]
    if not files:
        return None
    aside = directory / time.strftime("replaced-%Y%m%d-%H%M%S")
    suffix = 1
    while aside.exists():
        aside, suffix = directory / f"{aside.name.split('.')[0]}.{suffix}", suffix + 1
    aside.mkdir()
    for f in files:
        f.rename(aside / f.name)
    return aside
