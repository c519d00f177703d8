"""A fixed, seeded, stratified subset of a training set (--train-images N)."""
from __future__ import annotations

import numpy as np

from data.errors import DataError


def stratified_subset(labels: np.ndarray, count: int, seed: int, name: str) -> np.ndarray:
    """Sorted indices of `count` training images, each class in proportion to its share.

    Stratified rather than uniform so a small subset still has every class in the dataset's
    proportions (a uniform draw of 100 images can miss a class). Quotas are the exact shares
    rounded by largest remainder, so they sum to `count`; within a class the images are the
    first of one seeded shuffle of the whole set. Same labels, count and seed: same subset.
    """
    total = len(labels)
    if count < 1:
        raise DataError(f"the number of training images must be at least 1, got {count}")
    if count > total:
        raise DataError(f"--train-images {count} is more than the {total} training images of "
                        f"{name}: give at most {total}, or leave it out to use all of them")
    if seed < 0:
        raise DataError(f"the data seed must be >= 0, got {seed}")
    classes, sizes = np.unique(labels, return_counts=True)
    shares = count * sizes.astype(np.int64)
    quotas, remainders = shares // total, shares % total
    short = count - int(quotas.sum())
    # Stable sort: equal remainders go to the lower class first, so the result is fixed.
    quotas[np.argsort(-remainders, kind="stable")[:short]] += 1
    order = np.random.default_rng(seed).permutation(total)
    shuffled_labels = labels[order]
    chosen = [order[shuffled_labels == label][:quota] for label, quota in zip(classes, quotas)]
    return np.sort(np.concatenate(chosen))
