"""A user's own dataset: `--dataset path/to/data.npz`, or a folder of .npy files of the same names.

The arrays are `x_train`, `y_train`, `x_test`, `y_test`, as `tf.keras.datasets` returns them: images
[N, H, W] or [N, H, W, C], uint8 (0..255) or float (already in [0, 1]); labels integers 0..K-1 ([N] or
[N, 1]); the class count is the largest label plus one. Read without pickle (`allow_pickle=False`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.errors import DataError

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
LAYOUT = ("x_train, y_train, x_test, y_test (images [N, H, W] or [N, H, W, C], uint8 or float in [0, 1]; "
          "integer labels 0..K-1)")


def is_path(name: str) -> bool:
    """Whether a --dataset value names a file or folder of the user's own rather than a built-in dataset."""
    text = str(name)
    return text.endswith(".npz") or os.sep in text or text.startswith(".") or Path(text).is_dir()


def canonical(name: str) -> str:
    return str(Path(name).expanduser().resolve())


def files(name: str) -> tuple[Path, ...]:
    """The files the dataset at `name` is read from (DataError if there are none)."""
    path = Path(canonical(name))
    if path.is_dir():
        found = tuple(path / f"{a}.npy" for a in ARRAYS)
        missing = [p.name for p in found if not p.is_file()]
        if missing:
            raise DataError(f"dataset folder {path} lacks {', '.join(missing)}: it must hold {', '.join(a + '.npy' for a in ARRAYS)} "
                            f"({LAYOUT.split(' (', 1)[1][:-1]})")
        return found
    if not path.is_file():
        raise DataError(f"dataset {path}: no such file or folder (a dataset of your own is an .npz file, or a folder "
                        f"of .npy files, holding {LAYOUT})")
    return (path,)


def _arrays(name: str, wanted: tuple[str, ...] = ARRAYS) -> dict[str, np.ndarray]:
    """The arrays `wanted` (an .npz reads only those it is asked for)."""
    paths = files(name)
    try:
        if len(paths) == 1:
            with np.load(paths[0], allow_pickle=False) as npz:
                missing = [a for a in ARRAYS if a not in npz.files]
                if missing:
                    raise DataError(f"{paths[0]} lacks {', '.join(missing)} (it has {', '.join(npz.files) or 'no arrays'}): "
                                    f"a dataset file holds {LAYOUT}")
                return {a: npz[a] for a in wanted}
        return {a: np.load(p, allow_pickle=False) for a, p in zip(ARRAYS, paths) if a in wanted}
    except DataError:
        raise
    except ValueError as e:  # object arrays (pickles) are refused by allow_pickle=False
        raise DataError(f"dataset {canonical(name)}: {e} (arrays of numbers only; nothing pickled is read)") from None
    except (OSError, EOFError) as e:
        raise DataError(f"dataset {canonical(name)} cannot be read: {e}") from None


def _labels(y: np.ndarray, n: int, which: str, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {which} must be integer labels of shape [N] or [N, 1]; got {y.dtype} {list(y.shape)}")
    if len(y) != n:
        raise DataError(f"{where}: {which} has {len(y)} labels for {n} images")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: {which} has a negative label ({int(y.min())}); labels are 0..K-1")
    return y.astype(np.int64)


def _images(x: np.ndarray, which: str, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or min(x.shape[1:]) < 1:
        raise DataError(f"{where}: {which} must be images [N, H, W] or [N, H, W, C]; got shape {list(x.shape)}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where}: {which} is {x.dtype}; images are uint8 (0..255) or float in [0, 1]")
    if not np.all(np.isfinite(x)) or (x.size and (x.min() < 0 or x.max() > 1)):
        raise DataError(f"{where}: {which} has values outside [0, 1] (or not finite): float images must be scaled to "
                        f"[0, 1] (or stored as uint8 0..255)")
    return x.astype(np.float32, copy=False)


def read(name: str) -> dict:
    """The checked arrays and what the loader needs: {"train", "test", "classes", "levels", "files"}."""
    where = canonical(name)
    a = _arrays(name)
    x_train, x_test = _images(a["x_train"], "x_train", where), _images(a["x_test"], "x_test", where)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: x_train's images are {list(x_train.shape[1:])} but x_test's {list(x_test.shape[1:])}")
    if x_train.dtype != x_test.dtype:
        raise DataError(f"{where}: x_train is {x_train.dtype} but x_test {x_test.dtype}: store both alike")
    y_train = _labels(a["y_train"], len(x_train), "y_train", where)
    y_test = _labels(a["y_test"], len(x_test), "y_test", where)
    classes = _classes(y_train, y_test, where)
    return {"train": (x_train, y_train), "test": (x_test, y_test), "classes": classes,
            "levels": 255 if x_train.dtype == np.uint8 else 1, "files": tuple(str(p) for p in files(name))}


def class_count(name: str) -> int:
    """The class count from the labels alone: the launcher's check sizes the model before any image is read."""
    where = canonical(name)
    a = _arrays(name, ("y_train", "y_test"))
    return _classes(*(_labels(a[k], len(a[k]), k, where) for k in ("y_train", "y_test")), where)


def _classes(y_train: np.ndarray, y_test: np.ndarray, where: str) -> int:
    if len(y_train) == 0 or len(y_test) == 0:
        raise DataError(f"{where}: the training and the test set both need images")
    classes = int(max(y_train.max(), y_test.max())) + 1
    if classes < 2:
        raise DataError(f"{where}: every label is 0: a classifier needs at least 2 classes")
    return classes
