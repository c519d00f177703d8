"""The in-memory dataset every loader returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images float32 [N, H, W, C] in [0, 1] and labels int32 [N], for training and test.

    Loaded arrays are shared by an in-process cache and are therefore read-only: take a copy
    before changing one in place.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: int
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.train_x.shape[1:]
        return int(height), int(width), int(channels)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
                f"image_shape={format_shape(self.image_shape)}, classes={self.classes}, "
                f"source={self.source!r})")


def format_shape(shape: tuple[int, ...]) -> str:
    """(28, 28, 1) -> '28x28x1', the way error messages name image shapes."""
    return "x".join(str(int(d)) for d in shape)


def from_uint8(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
               classes: int, source: str) -> Dataset:
    """Scale uint8 HWC images to float32 [0, 1], labels to int32, and freeze the arrays."""

    def images(x: np.ndarray) -> np.ndarray:
        # Contiguous first: a ufunc on a transposed view would keep the transposed strides.
        scaled = np.divide(np.ascontiguousarray(x), np.float32(255), dtype=np.float32)
        scaled.flags.writeable = False
        return scaled

    def labels(y: np.ndarray) -> np.ndarray:
        as_int = np.ascontiguousarray(y, dtype=np.int32)
        as_int.flags.writeable = False
        return as_int

    return Dataset(name=name, train_x=images(train[0]), train_y=labels(train[1]),
                   test_x=images(test[0]), test_y=labels(test[1]), classes=classes, source=source)
