"""The validation split: training images held out from every run's training, for choosing an epoch.

A run's test accuracy is never selected on: the PS measures the global model on these images at every
epoch end beside the test set, and a record reports the final test accuracy and the test accuracy of
the epoch with the best validation accuracy (`select_epoch`). The split is fixed (its own seed, not the
run's), so every method and seed at the same data flags holds out the same images; its default size is
a twelfth of the training images (5,000 of Fashion-MNIST's 60,000).

Synthetic data is generated: its validation images are drawn from the same generator after the test
images, so its training set keeps its size (and the tests' step counts their value).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data.dataset import Dataset
from data.errors import DataError

FRACTION = 12        # the default: one training image in twelve
SPLIT_SEED = 20240515  # fixed: the same images whatever the run's --seed


def default_images(train_images: int) -> int:
    """The default validation size for a training set of `train_images` (at least 1 for any set of 2+)."""
    return max(1, round(train_images / FRACTION)) if train_images > 1 else 0


def split_indices(train_images: int, images: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows kept, validation rows) of a training set of `train_images` rows, both sorted."""
    if not 0 <= images < train_images:
        raise DataError(f"--validation-images {images} must be at least 0 and below the {train_images} training "
                        f"images (some must be left to train on)")
    order = np.random.default_rng(SPLIT_SEED).permutation(train_images)
    return np.sort(order[images:]), np.sort(order[:images])


def hold_out(dataset: Dataset, images: int | None) -> Dataset:
    """`dataset` with `images` validation images (None: the default size; 0: none) out of its training set."""
    n = len(dataset.train_y)
    images = default_images(n) if images is None else int(images)
    if images == 0:
        return dataclasses.replace(dataset, val_x=dataset.train_x[:0], val_y=dataset.train_y[:0])
    if dataset.name == "synthetic":
        from data.synthesis import synthetic

        generated = synthetic(dataset.image_shape, dataset.classes, train_size=n, test_size=len(dataset.test_y),
                              seed=_synthetic_seed(dataset), val_size=images)
        return dataclasses.replace(dataset, val_x=generated.val_x, val_y=generated.val_y, provenance={
            **dataset.provenance, "validation_images": images, "transforms": [
                *dataset.provenance.get("transforms", []),
                f"validation: {images} more images generated (never trained on)"]})
    kept, held = split_indices(n, images)
    frozen = [_frozen(a) for a in (dataset.train_x[kept], dataset.train_y[kept], dataset.train_x[held],
                                    dataset.train_y[held])]
    return dataclasses.replace(
        dataset, train_x=frozen[0], train_y=frozen[1], val_x=frozen[2], val_y=frozen[3], provenance={
            **dataset.provenance, "train_images": n - images, "validation_images": images, "transforms": [
                *dataset.provenance.get("transforms", []),
                f"validation: {images} of the {n} training images held out (fixed split, seed {SPLIT_SEED}), "
                f"never trained on"]})


def select_epoch(val_accs: list[float]) -> int:
    """The index of the best validation accuracy; a tie goes to the earlier epoch."""
    if not val_accs:
        raise ValueError("no epoch to select from")
    return int(np.argmax(np.asarray(val_accs, dtype=np.float64)))  # argmax returns the first of equal maxima


def _synthetic_seed(dataset: Dataset) -> int:
    origin = dataset.source  # "synthetic(seed=N)"
    return int(origin.split("seed=")[1].rstrip(")"))


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array
