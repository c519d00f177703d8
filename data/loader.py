"""load(): from a dataset name to a Dataset, via the file readers and in-process caches.

Every dataset goes the same way: read (uint8, cached per set of files), take the training
subset, permute labels, fit to the model's input, scale to float32 [0, 1] (cached per request).
Keeping the read in uint8 means a fitted dataset holds one float32 copy, not two.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from pathlib import Path

import numpy as np

from data import fit as fitting
from data import own
from data.catalog import (DIGITS_CLASSES, DIGITS_DEFAULT_SHAPE, DIGITS_LEVELS, DIGITS_NATIVE_SHAPE,
                          DIGITS_TEST_EVERY, RELABELLED, SPECS, DatasetSpec)
from data.cifar import check_labels, read_binary_batch, read_python_batch
from data.dataset import Dataset, frozen_labels, provenance
from data.digits import read_digits
from data.errors import DataError
from data.files import REDOWNLOAD
from data.idx import read_idx_split
from data.locate import DOWNLOAD_ENV, Found, keras_datasets_dir, locate
from data.subset import stratified_subset
from data.synthesis import synthetic

NAMES: tuple[str, ...] = tuple(SPECS) + tuple(RELABELLED) + ("digits", "synthetic")
SYNTHETIC_DEFAULT_SHAPE = (28, 28, 1)
SYNTHETIC_DEFAULT_CLASSES = 10
FILELESS = ("digits", "synthetic")
UINT8_LEVELS = 255

Split = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Raw:
    """A dataset as read: images at their stored shape and range 0..levels, integer labels."""

    train: Split
    test: Split
    classes: int
    levels: int                 # the value of a white pixel
    source: str                 # Dataset.source: the folder read, or what produced the data
    origin: str                 # provenance["origin"]
    files: tuple[str, ...]
    steps: tuple[str, ...] = ()  # done while reading (the digits' split)


def canonical_name(name: str) -> str:
    """'Fashion-MNIST', 'fashion_mnist', 'cifar-10' -> the entry of NAMES they mean."""
    if own.is_path(name):
        return own.canonical(name)
    key = "".join(ch for ch in str(name).lower() if ch not in "-_ ")
    for known in NAMES:
        if known.replace("_", "") == key:
            return known
    raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(NAMES)}, or a path to your own "
                    f"(an .npz file or a folder of .npy files holding {', '.join(own.ARRAYS)})")


def class_count(name: str) -> int:
    """How many classes dataset `name` has, without reading it (DataError for an unknown name)."""
    canonical = canonical_name(name)
    if own.is_path(canonical):
        return own.class_count(canonical)
    if canonical == "synthetic":
        return SYNTHETIC_DEFAULT_CLASSES
    if canonical == "digits":
        return DIGITS_CLASSES
    relabelled = RELABELLED.get(canonical)
    return SPECS[relabelled.base if relabelled else canonical].classes


def load(name: str, data_dir: str | os.PathLike | None = None, *,
         image_shape: tuple[int, int, int] | None = None, classes: int | None = None,
         seed: int = 0, fit_input: bool = False, train_images: int | None = None) -> Dataset:
    """The dataset `name`, read from data_dir, or else from the first place that has its files.

    image_shape: the model's input. A real dataset of another shape is an error, unless
      fit_input: then its images are zero-padded (centred) and a grey channel repeated to fit,
      and digits are upscaled straight to the size (see data.fit). For synthetic data it is
      the shape generated.
    classes: must match a real dataset; the class count of synthetic data.
    train_images: a fixed subset of that many training images (stratified, chosen by `seed`);
      None keeps them all. The test set is never cut.
    seed: picks the training subset, and generates synthetic data.
    """
    canonical = canonical_name(name)
    given_dir = data_dir is not None and str(data_dir) != ""
    if given_dir and canonical in FILELESS:
        raise DataError(f"{canonical} reads no files, so --data-dir {data_dir} means nothing for "
                        f"it: leave --data-dir out")
    if train_images is not None and train_images < 1:
        raise DataError(f"the number of training images must be at least 1, got {train_images}")
    subset_seed = int(seed) if train_images is not None else 0  # the seed matters only then
    if own.is_path(canonical):
        if given_dir:
            raise DataError(f"--dataset {canonical} names its files itself, so --data-dir {data_dir} means nothing "
                            f"for it: leave --data-dir out")
        arrays = own.read(canonical)
        _check_classes(canonical, arrays["classes"], classes)
        stored = tuple(int(d) for d in arrays["train"][0].shape[1:])
        raw = Raw(arrays["train"], arrays["test"], arrays["classes"], arrays["levels"], source=canonical,
                  origin=f"your own files ({canonical})", files=arrays["files"])
        return _finish(canonical, raw, fitting.plan(canonical, stored, stored, image_shape, fit_input), None,
                       train_images, subset_seed)
    if canonical == "synthetic":
        return _synthetic(image_shape, classes, int(seed), train_images)
    if canonical == "digits":
        _check_classes(canonical, DIGITS_CLASSES, classes)
        fit = fitting.plan(canonical, DIGITS_NATIVE_SHAPE, DIGITS_DEFAULT_SHAPE, image_shape,
                           fit_input, resizable=True)
        return _digits_cached(fit, train_images, subset_seed)
    relabelled = RELABELLED.get(canonical)
    spec = SPECS[relabelled.base if relabelled else canonical]
    permutation = relabelled.permutation if relabelled else None
    _check_classes(canonical, spec.classes, classes)
    fit = fitting.plan(canonical, spec.image_shape, spec.image_shape, image_shape, fit_input)
    try:
        found = locate(spec, data_dir)
    except DataError as missing:
        # Never instead of an explicit data_dir: the data would not be what was asked for.
        if not given_dir and os.environ.get(DOWNLOAD_ENV) == "1":
            return _finish(canonical, _download(spec, missing), fit, permutation, train_images,
                           subset_seed)
        raise
    signature = tuple(_file_signature(path) for path in found.paths)
    return _files_cached(canonical, found, signature, fit, permutation, train_images, subset_seed)


def _check_classes(name: str, has: int, asked: int | None) -> None:
    if asked is not None and asked != has:
        raise DataError(f"{asked} classes were asked for but {name} has {has}: "
                        f"build the model with {has} classes")


def _file_signature(path: Path) -> tuple[str, int, int]:
    # Part of the cache keys, so a file replaced on disk (a finished download) is read again.
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


# Small caches: a process normally trains on one dataset, and a fitted Fashion-MNIST is
# ~290 MB of float32; two entries let a caller alternate between two requests.
@functools.lru_cache(maxsize=2)
def _files_cached(name: str, found: Found, signature: tuple[tuple[str, int, int], ...],
                  fit: fitting.Fit, permutation: tuple[int, ...] | None,
                  train_images: int | None, seed: int) -> Dataset:
    return _finish(name, _read_files(found, signature), fit, permutation, train_images, seed)


@functools.lru_cache(maxsize=2)
def _digits_cached(fit: fitting.Fit, train_images: int | None, seed: int) -> Dataset:
    train, test, origin, files = read_digits()
    split = (f"split 80/20 by class: every {DIGITS_TEST_EVERY}th image of each class (file "
             f"order) is a test image")
    raw = Raw(train, test, DIGITS_CLASSES, DIGITS_LEVELS, origin, origin, files, (split,))
    return _finish("digits", raw, fit, None, train_images, seed)


def _finish(name: str, raw: Raw, fit: fitting.Fit, permutation: tuple[int, ...] | None,
            train_images: int | None, seed: int) -> Dataset:
    """Subset, relabel, fit and scale a raw dataset into the Dataset a request asked for."""
    transforms = list(raw.steps)
    (train_x, train_y), (test_x, test_y) = raw.train, raw.test
    if train_images is not None:
        # Chosen on the original labels, so a relabelled dataset uses the very same images.
        chosen = stratified_subset(train_y, train_images, seed, name)
        transforms.append(f"training subset of {train_images} of {len(train_y)} images, "
                          f"stratified by class, seed {seed}")
        train_x, train_y = train_x[chosen], train_y[chosen]
    if permutation is not None:
        new_label = np.asarray(permutation)
        train_y, test_y = new_label[train_y], new_label[test_y]
        transforms.append(f"labels permuted by {list(permutation)} (label i becomes entry i), "
                          f"train and test")
    transforms += fit.steps()
    train_x = fitting.apply(fit, train_x, raw.levels)
    test_x = fitting.apply(fit, test_x, raw.levels)
    record = provenance(name, raw.origin, raw.files, transforms, fit.target, raw.classes,
                        len(train_y), len(test_y))
    return Dataset(name=name, train_x=train_x, train_y=frozen_labels(train_y), test_x=test_x,
                   test_y=frozen_labels(test_y), classes=raw.classes, source=raw.source,
                   provenance=record)


def _synthetic(image_shape: tuple[int, int, int] | None, classes: int | None, seed: int,
               train_images: int | None) -> Dataset:
    dataset = synthetic(image_shape or SYNTHETIC_DEFAULT_SHAPE,
                        classes or SYNTHETIC_DEFAULT_CLASSES, seed=seed)
    if train_images is None:
        return dataset
    chosen = stratified_subset(dataset.train_y, train_images, seed, dataset.name)
    record = dict(dataset.provenance, train_images=train_images, transforms=[
        *dataset.provenance["transforms"],
        f"training subset of {train_images} of {len(dataset.train_y)} images, stratified by "
        f"class, seed {seed}"])
    return dataclasses.replace(dataset, train_x=_frozen(dataset.train_x[chosen]),
                               train_y=_frozen(dataset.train_y[chosen]), provenance=record)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=2)
def _read_files(found: Found, signature: tuple[tuple[str, int, int], ...]) -> Raw:
    """The files as read: uint8 images, read-only, at the dataset's own shape."""
    spec, storage, paths = found.spec, found.storage, found.paths
    if storage.kind == "idx":
        train = read_idx_split(paths[0], paths[1], spec.image_shape[:2])
        test = read_idx_split(paths[2], paths[3], spec.image_shape[:2])
        for path, (_, labels) in ((paths[1], train), (paths[3], test)):
            check_labels(labels, spec.classes, path)
    elif storage.kind == "npz":
        train, test = _read_keras_npz(paths[0], spec)
    elif storage.kind == "cifar-py":
        label_key = "fine_labels" if spec.classes == 100 else "labels"
        batches = [read_python_batch(path, label_key, spec.classes) for path in paths]
        train, test = _concatenate(batches[:-1]), batches[-1]
    elif storage.kind == "cifar-bin":
        # CIFAR-100 records carry (coarse, fine) label bytes; the fine label is the class.
        header = 2 if spec.classes == 100 else 1
        batches = [read_binary_batch(path, header - 1, header, spec.classes) for path in paths]
        train, test = _concatenate(batches[:-1]), batches[-1]
    else:  # a catalog entry without a reader is a programming error
        raise AssertionError(f"no reader for storage format {storage.kind}")
    for array in (*train, *test):
        array.flags.writeable = False  # shared by every request on these files
    files = tuple(path for path, _, _ in signature)
    return Raw(train, test, spec.classes, UINT8_LEVELS, str(found.folder), str(found.folder),
               files)


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


def _download(spec: DatasetSpec, missing: DataError) -> Raw:
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
    origin = (f"tf.keras.datasets.{spec.keras_loader} download (cached in "
              f"{keras_datasets_dir()})")
    return Raw(splits[0], splits[1], spec.classes, UINT8_LEVELS, origin, origin, ())
