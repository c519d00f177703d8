"""scikit-learn's handwritten digits: 1,797 real 8x8 images, grey levels 0..16, 10 classes.

They ship inside the scikit-learn package (no download). The train/test split is fixed and
needs no random numbers, so it is the same on every machine and for every seed: within each
class, in file order, every 5th image is a test image (80/20, stratified).
"""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from data.catalog import DIGITS_CLASSES, DIGITS_NATIVE_SHAPE, DIGITS_TEST_EVERY
from data.errors import DataError

Split = tuple[np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=1)
def read_digits() -> tuple[Split, Split, str, tuple[str, ...]]:
    """(train, test, origin, files): uint8 [N, 8, 8, 1] images of levels 0..16, int labels,
    a description of where they came from and the file scikit-learn read them from."""
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError(f"the digits dataset comes with scikit-learn, which is not installed "
                        f"({error}): pip install scikit-learn") from error
    bunch = load_digits()
    images = np.asarray(bunch.images).reshape((-1,) + DIGITS_NATIVE_SHAPE)
    labels = np.asarray(bunch.target)
    if images.min() < 0 or images.max() > 16 or set(np.unique(labels)) != set(range(DIGITS_CLASSES)):
        raise DataError(f"scikit-learn {sklearn.__version__}'s load_digits returned unexpected "
                        f"data (levels {images.min()}..{images.max()}): reinstall scikit-learn")
    test = is_test_image(labels)
    splits = []
    for chosen in (~test, test):
        pixels = images[chosen].astype(np.uint8)
        targets = labels[chosen].astype(np.int64)
        pixels.flags.writeable = targets.flags.writeable = False
        splits.append((pixels, targets))
    csv = resources.files("sklearn.datasets") / "data" / "digits.csv.gz"
    files = (str(csv),) if csv.is_file() else ()
    return splits[0], splits[1], f"scikit-learn {sklearn.__version__} load_digits", files


def is_test_image(labels: np.ndarray) -> np.ndarray:
    """True for the test images: every DIGITS_TEST_EVERY-th image of each class, in file order."""
    rank_in_class = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank_in_class[members] = np.arange(len(members))
    return rank_in_class % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
