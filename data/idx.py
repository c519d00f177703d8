"""The IDX format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic (0, 0, element type, number of dimensions), one big-endian
uint32 per dimension, then the elements in C order. Both datasets use element type 0x08
(unsigned byte): images as IDX3 [N, 28, 28], labels as IDX1 [N].
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.files import REDOWNLOAD, read_bytes

UNSIGNED_BYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file of `ndim` dimensions (file gzipped or not)."""
    raw = read_bytes(path)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path} is {len(raw)} bytes long, too short for an IDX{ndim} header of "
                        f"{header_size} bytes: it is truncated; {REDOWNLOAD}")
    expected_magic = bytes((0, 0, UNSIGNED_BYTE, ndim))
    if raw[:4] != expected_magic:
        raise DataError(f"{path} does not start with the IDX{ndim} magic {expected_magic.hex()} "
                        f"(found {raw[:4].hex()}): it is corrupted or is not the file its name "
                        f"says; {REDOWNLOAD}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected_bytes = math.prod(dims)
    found_bytes = len(raw) - header_size
    if found_bytes != expected_bytes:
        raise DataError(f"{path}: its header announces {'x'.join(map(str, dims))} = "
                        f"{expected_bytes} values but the file holds {found_bytes}: it is "
                        f"truncated or corrupted; {REDOWNLOAD}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def read_idx_split(images_path: Path, labels_path: Path,
                   image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, H, W, 1] and labels uint8 [N] of one split, checked against each other."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != image_hw:
        raise DataError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images but this "
                        f"dataset has {image_hw[0]}x{image_hw[1]}: it belongs to another dataset")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels: one of them is truncated or from another copy; "
                        f"{REDOWNLOAD}")
    return images[..., np.newaxis], labels
