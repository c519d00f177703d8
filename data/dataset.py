"""The in-memory dataset every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images float32 [N, H, W, C] in [0, 1] and labels int32 [N], for training and test.

    Loaded arrays are shared by an in-process cache and are therefore read-only: take a copy
    before changing one in place. Images fitted to three channels from one grey channel are a
    stride-0 view (see data.fit.apply); indexing a batch out of them gives an ordinary array.

    provenance (JSON-serialisable) says where the data came from and what was done to it:
    {"dataset", "origin", "files" (absolute paths read), "transforms" (list of sentences),
     "image_shape", "classes", "train_images", "test_images"}.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: int
    source: str
    provenance: dict = field(default_factory=dict)
    # Held out of the training images for choosing an epoch (data.validation.hold_out); None: not split.
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None

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


def provenance(name: str, origin: str, files: tuple[str, ...] | list[str], transforms: list[str],
               image_shape: tuple[int, ...], classes: int, train_images: int,
               test_images: int) -> dict:
    """The Dataset.provenance record, built from plain str/int/list values only."""
    return {"dataset": name, "origin": origin, "files": [str(path) for path in files],
            "transforms": [str(step) for step in transforms],
            "image_shape": [int(d) for d in image_shape], "classes": int(classes),
            "train_images": int(train_images), "test_images": int(test_images)}


def frozen_labels(y: np.ndarray) -> np.ndarray:
    """int32 read-only copy of labels."""
    as_int = np.ascontiguousarray(y, dtype=np.int32)
    as_int.flags.writeable = False
    return as_int
