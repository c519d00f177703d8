"""The CIFAR-10 and CIFAR-100 file formats, python pickles and binary records.

Both store a 32x32 RGB image as 3072 bytes: the 1024 red values, then green, then blue, each
plane in row-major order. The readers return HWC uint8 images.
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.files import REDOWNLOAD, read_bytes

SIDE = 32
PIXELS = 3 * SIDE * SIDE

# The globals a pickled uint8 array needs, and nothing else. Pickles written by numpy < 2
# (the official CIFAR files among them) say `numpy.core`, numpy >= 2 says `numpy._core`;
# protocol 5 rebuilds arrays with `_frombuffer` instead of `_reconstruct`.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names something other than numpy's array helpers."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused.

    An ordinary unpickler calls whatever a file names (os.system, eval, ...), so a CIFAR file
    from an untrusted place could run code. This one only resolves array reconstruction helpers.
    """

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise RefusedGlobal(f"refused to load the global {module}.{name}, which a CIFAR "
                                f"batch never contains")
        return _numpy_global(module, name)


def _numpy_global(module: str, name: str):
    # Import whichever spelling the installed numpy provides, so files from either era load
    # without touching numpy.core's deprecation shim on numpy 2.
    modern = module.replace("numpy.core", "numpy._core", 1)
    legacy = modern.replace("numpy._core", "numpy.core", 1)
    for candidate in dict.fromkeys((modern, legacy)):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {module}.{name}")


def read_python_batch(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 32, 32, 3] and labels [N] from one pickled CIFAR batch."""
    raw = read_bytes(path)
    try:
        batch = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobal as error:
        raise DataError(f"{path} was not loaded: {error}. The file may be malicious; delete it "
                        f"and get the dataset from its official source") from error
    except Exception as error:  # a damaged pickle can fail in many ways; all mean the same here
        raise DataError(f"{path} is not a readable CIFAR python batch ({type(error).__name__}: "
                        f"{error}); {REDOWNLOAD}") from error
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not the dictionary of a CIFAR "
                        f"python batch; {REDOWNLOAD}")
    # The official files were pickled by Python 2, so their keys arrive as bytes.
    entries = {key.decode("latin1") if isinstance(key, bytes) else key: value
               for key, value in batch.items()}
    if "data" not in entries or label_key not in entries:
        raise DataError(f"{path} lacks the keys 'data' and '{label_key}' of a CIFAR python batch "
                        f"(it has {sorted(map(str, entries))}); {REDOWNLOAD}")
    pixels = entries["data"]
    if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 2
            and pixels.shape[1] == PIXELS):
        found = (f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray)
                 else type(pixels).__name__)
        raise DataError(f"{path}: 'data' should be uint8 [N, {PIXELS}] but is {found}; "
                        f"{REDOWNLOAD}")
    labels = _labels(entries[label_key], path, label_key)
    if len(labels) != len(pixels):
        raise DataError(f"{path} holds {len(pixels)} images but {len(labels)} labels; "
                        f"{REDOWNLOAD}")
    check_labels(labels, classes, path)
    return _to_hwc(pixels), labels


def read_binary_batch(path: Path, label_offset: int, header_bytes: int,
                      classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 32, 32, 3] and labels [N] from a file of fixed-size binary records.

    Each record is `header_bytes` label bytes (CIFAR-10: the label; CIFAR-100: coarse, fine)
    followed by the 3072 pixel bytes; `label_offset` picks the label byte to use.
    """
    raw = read_bytes(path)
    record = header_bytes + PIXELS
    if not raw or len(raw) % record:
        raise DataError(f"{path} is {len(raw)} bytes long, not a whole number of {record}-byte "
                        f"CIFAR records: it is truncated or is not a file of this dataset; "
                        f"{REDOWNLOAD}")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = records[:, label_offset]
    check_labels(labels, classes, path)
    return _to_hwc(records[:, header_bytes:]), labels


def check_labels(labels: np.ndarray, classes: int, path: Path) -> None:
    """Refuse labels outside 0..classes-1, which would silently break the loss."""
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path} has labels from {labels.min()} to {labels.max()} but this "
                        f"dataset has {classes} classes (0..{classes - 1}): it belongs to "
                        f"another dataset or is corrupted")


def _labels(value: object, path: Path, label_key: str) -> np.ndarray:
    try:
        labels = np.asarray(value)
    except Exception as error:
        raise DataError(f"{path}: '{label_key}' is not a list of labels ({error})") from error
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{path}: '{label_key}' should be a list of integers but is "
                        f"{labels.dtype} {labels.shape}; {REDOWNLOAD}")
    return labels.astype(np.int64)


def _to_hwc(channel_major: np.ndarray) -> np.ndarray:
    planes = channel_major.reshape(-1, 3, SIDE, SIDE)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1))
