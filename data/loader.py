"""load(): from a dataset name to a Dataset, via the file readers and an in-process cache."""
from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import numpy as np

from data.catalog import SPECS, DatasetSpec
from data.cifar import check_labels, read_binary_batch, read_python_batch
from data.dataset import Dataset, format_shape, from_uint8
from data.errors import DataError
from data.files import REDOWNLOAD
from data.idx import read_idx_split
from data.locate import DOWNLOAD_ENV, Found, keras_datasets_dir, locate
from data.synthesis import synthetic

NAMES: tuple[str, ...] = tuple(SPECS) + ("synthetic",)
SYNTHETIC_DEFAULT_SHAPE = (28, 28, 1)
SYNTHETIC_DEFAULT_CLASSES = 10


def canonical_name(name: str) -> str:
    """'Fashion-MNIST', 'fashion_mnist', 'cifar-10' -> the entry of NAMES they mean."""
    key = "".join(ch for ch in str(name).lower() if ch not in "-_ ")
    for known in NAMES:
        if known.replace("_", "") == key:
            return known
    raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(NAMES)}")


def load(name: str, data_dir: str | os.PathLike | None = None, *,
         image_shape: tuple[int, int, int] | None = None, classes: int | None = None,
         seed: int = 0) -> Dataset:
    """The dataset `name`, read from the first place that has its standard files.

    image_shape, classes and seed shape the synthetic dataset; for a real one, a given
    image_shape or classes must match it (a DataError says so before anything is read).
    """
    canonical = canonical_name(name)
    if canonical == "synthetic":
        return synthetic(image_shape or SYNTHETIC_DEFAULT_SHAPE,
                         classes or SYNTHETIC_DEFAULT_CLASSES, seed=seed)
    spec = SPECS[canonical]
    _check_request(spec, image_shape, classes)
    try:
        found = locate(spec, data_dir)
    except DataError as missing:
        if os.environ.get(DOWNLOAD_ENV) == "1":
            return _download(spec, missing)
        raise
    signature = tuple(_file_signature(path) for path in found.paths)
    return _read_cached(found, signature)


def _check_request(spec: DatasetSpec, image_shape: tuple[int, int, int] | None,
                   classes: int | None) -> None:
    if image_shape is not None and tuple(image_shape) != spec.image_shape:
        raise DataError(f"the model expects {format_shape(tuple(image_shape))} images but "
                        f"{spec.name} has {format_shape(spec.image_shape)}: pick a model built "
                        f"for {format_shape(spec.image_shape)} inputs or another dataset")
    if classes is not None and classes != spec.classes:
        raise DataError(f"{classes} classes were asked for but {spec.name} has {spec.classes}: "
                        f"build the model with {spec.classes} classes")


def _file_signature(path: Path) -> tuple[str, int, int]:
    # Part of the cache key, so a file replaced on disk (a finished download) is read again.
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _read_cached(found: Found, signature: tuple[tuple[str, int, int], ...]) -> Dataset:
    del signature  # only part of the key
    spec, layout, paths = found.spec, found.layout, found.paths
    if layout.kind == "idx":
        train = read_idx_split(paths[0], paths[1], spec.image_shape[:2])
        test = read_idx_split(paths[2], paths[3], spec.image_shape[:2])
        for path, (_, labels) in ((paths[1], train), (paths[3], test)):
            check_labels(labels, spec.classes, path)
    elif layout.kind == "npz":
        train, test = _read_keras_npz(paths[0], spec)
    elif layout.kind == "cifar-py":
        label_key = "fine_labels" if spec.classes == 100 else "labels"
        batches = [read_python_batch(path, label_key, spec.classes) for path in paths]
        train, test = _concatenate(batches[:-1]), batches[-1]
    elif layout.kind == "cifar-bin":
        # CIFAR-100 records carry (coarse, fine) label bytes; the fine label is the class.
        header = 2 if spec.classes == 100 else 1
        batches = [read_binary_batch(path, header - 1, header, spec.classes) for path in paths]
        train, test = _concatenate(batches[:-1]), batches[-1]
    else:  # a catalog entry without a reader is a programming error
        raise AssertionError(f"no reader for layout {layout.kind}")
    return from_uint8(spec.name, train, test, spec.classes, source=str(found.folder))


def _concatenate(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(batches) == 1:
        return batches[0]
    return (np.concatenate([images for images, _ in batches]),
            np.concatenate([labels for _, labels in batches]))


def _read_keras_npz(path: Path, spec: DatasetSpec) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Keras' mnist.npz: x_train, y_train, x_test, y_test; read with pickles disabled."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as archive:
            x_train, y_train, x_test, y_test = (np.asarray(archive[key]) for key in keys)
    except KeyError as error:
        raise DataError(f"{path} lacks the arrays {', '.join(keys)} of Keras' mnist.npz; "
                        f"{REDOWNLOAD}") from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz archive ({error}); {REDOWNLOAD}") from error
    splits = []
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        if images.dtype != np.uint8 or images.shape[1:] != spec.image_shape[:2]:
            raise DataError(f"{path}: images are {images.dtype} {images.shape}, expected uint8 "
                            f"[N, {spec.image_shape[0]}, {spec.image_shape[1]}]; {REDOWNLOAD}")
        labels = labels.reshape(-1)
        if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: {len(images)} images but labels {labels.dtype} "
                            f"{labels.shape}; {REDOWNLOAD}")
        check_labels(labels, spec.classes, path)
        splits.append((images[..., np.newaxis], labels))
    return splits[0], splits[1]


def _download(spec: DatasetSpec, missing: DataError) -> Dataset:
    """Last resort, only with MP2_DOWNLOAD=1: let tf.keras.datasets fetch it (needs internet)."""
    import tensorflow as tf  # heavy, and only needed here

    loader = getattr(tf.keras.datasets, spec.keras_loader)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data(**dict(spec.keras_kwargs))
    except Exception as error:  # network, disk or archive trouble: all reported the same way
        raise DataError(f"{missing}\n{DOWNLOAD_ENV}=1 is set but the download failed: "
                        f"{type(error).__name__}: {error}") from error
    splits = []
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 3:
            images = images[..., np.newaxis]
        elif images.shape[1:] == (3,) + spec.image_shape[:2]:  # Keras set to channels_first
            images = images.transpose(0, 2, 3, 1)
        splits.append((images, np.asarray(labels).reshape(-1)))
    return from_uint8(spec.name, splits[0], splits[1], spec.classes,
                      source=f"tf.keras.datasets.{spec.keras_loader} download "
                             f"(cached in {keras_datasets_dir()})")
