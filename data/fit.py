"""Fitting a dataset's images to a model's input shape: zero padding, grey to RGB, upscaling.

Only changes that keep every original pixel are offered: padding (centred), repeating a grey
channel into three, and for datasets that are resized anyway (digits) bilinear upscaling.
Shrinking or dropping colour would throw information away, so it is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.dataset import format_shape
from data.errors import DataError

GREY_TO_RGB = 3

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Fit:
    """How images of `stored` shape become `target`-shaped ones."""

    stored: Shape   # the shape the dataset is read in (digits: its native 8x8x1)
    target: Shape
    resize: bool    # bilinear resize of the stored image to the target height and width
    pad: tuple[tuple[int, int], tuple[int, int]]  # (top, bottom), (left, right) zero rows/columns

    @property
    def repeat_channels(self) -> bool:
        return self.stored[2] != self.target[2]

    def steps(self) -> list[str]:
        """What is done, in the words provenance records keep."""
        stored_hw, target_hw = _hw(self.stored), _hw(self.target)
        done = []
        if self.resize:
            done.append(f"upscaled {stored_hw} to {target_hw} (bilinear, pixel centres aligned)")
        if any(sum(pair) for pair in self.pad):
            (top, bottom), (left, right) = self.pad
            done.append(f"zero-padded {stored_hw} to {target_hw} (rows {top} above, {bottom} "
                        f"below; columns {left} left, {right} right)")
        if self.repeat_channels:
            done.append(f"grey channel repeated to {self.target[2]}")
        return done


def plan(name: str, stored: Shape, offered: Shape, target: Shape | None, fit_input: bool,
         resizable: bool = False) -> Fit:
    """The Fit that gives `target` images (None: the dataset's own `offered` shape), or a
    DataError saying why not. `resizable` datasets (digits) are stored small and always resized."""
    wanted = tuple(int(d) for d in (target or offered))
    if len(wanted) != 3 or min(wanted) < 1:
        raise DataError(f"an image shape is (height, width, channels), all positive; got {target}")
    if wanted == tuple(offered) and not resizable:
        return Fit(stored, wanted, resize=False, pad=((0, 0), (0, 0)))
    if wanted != tuple(offered) and not fit_input:
        hint = _fit_hint(name, stored, offered, wanted, resizable)
        raise DataError(f"the model expects {format_shape(wanted)} images but {name} has "
                        f"{format_shape(offered)}: {hint}")
    problem = _impossible(stored, wanted, resizable)
    if problem:
        raise DataError(f"the model expects {format_shape(wanted)} images but {name} has "
                        f"{format_shape(offered)}, which --fit-input cannot fix: {problem}; pick "
                        f"a model built for {format_shape(offered)} inputs or another dataset")
    if resizable:
        return Fit(stored, wanted, resize=True, pad=((0, 0), (0, 0)))
    extra_rows, extra_cols = wanted[0] - stored[0], wanted[1] - stored[1]
    # Centred; an odd difference puts the extra row (column) below (right).
    pad = ((extra_rows // 2, extra_rows - extra_rows // 2),
           (extra_cols // 2, extra_cols - extra_cols // 2))
    return Fit(stored, wanted, resize=False, pad=pad)


def apply(fit: Fit, images: np.ndarray, scale: float) -> np.ndarray:
    """float32 [N, *fit.target] in [0, 1] from stored images [N, *fit.stored] of range 0..scale.

    One float32 array is made, of one channel when the grey channel is repeated: the repeat is
    a read-only view with stride 0 (np.broadcast_to), so three channels cost the memory of one;
    a batch taken from it by index is an ordinary contiguous array.
    """
    if images.shape[1:] != fit.stored:
        raise AssertionError(f"images {images.shape[1:]} are not the planned {fit.stored}")
    if any(sum(pair) for pair in fit.pad):
        # Padded while still uint8: the float32 copy is made once, at the final size.
        images = np.pad(images, ((0, 0),) + fit.pad + ((0, 0),))
    if fit.resize:
        scaled = resize_bilinear(np.divide(images, np.float32(scale), dtype=np.float32),
                                 fit.target[:2])
    else:
        scaled = np.divide(np.ascontiguousarray(images), np.float32(scale), dtype=np.float32)
    scaled.flags.writeable = False
    if fit.repeat_channels:
        return np.broadcast_to(scaled, scaled.shape[:3] + (fit.target[2],))
    return scaled


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [N, H', W', C] from [N, H, W, C]: bilinear with pixel centres aligned (the
    convention of TensorFlow's resize with half_pixel_centers, OpenCV's INTER_LINEAR), edges
    clamped. Each output is a convex mix of inputs, so [0, 1] values stay in [0, 1].

    Every image (and channel) is two matrix products of its own, the same whatever else is in the
    batch: a subset's images are bit for bit those of the full set. (One einsum over the batch was
    not: its BLAS blocking follows the batch size, and the last float32 bit moved with it.)"""
    rows = _interpolation_matrix(images.shape[1], size[0])
    cols = _interpolation_matrix(images.shape[2], size[1])
    planes = np.ascontiguousarray(np.moveaxis(np.asarray(images, np.float32), 3, 1))  # N, C, H, W
    resized = (rows @ planes) @ cols.T  # matmul broadcasts: one product per image and channel
    return np.ascontiguousarray(np.moveaxis(resized, 1, 3), dtype=np.float32)


def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    """[target, source] weights: output pixel t samples the input at (t + 0.5) * s / t' - 0.5."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), max(source - 2, 0))
    upper = np.minimum(lower + 1, source - 1)
    weight = position - lower
    matrix = np.zeros((target, source), np.float32)
    matrix[np.arange(target), lower] += (1 - weight).astype(np.float32)
    matrix[np.arange(target), upper] += weight.astype(np.float32)
    return matrix


def _impossible(stored: Shape, wanted: Shape, resizable: bool) -> str:
    if stored[2] != wanted[2] and not (stored[2] == 1 and wanted[2] == GREY_TO_RGB):
        return (f"it repeats a grey channel to make {GREY_TO_RGB}, and cannot turn "
                f"{stored[2]} channels into {wanted[2]}")
    if wanted[0] < stored[0] or wanted[1] < stored[1]:
        verb = "upscales" if resizable else "zero-pads"
        return (f"it only {verb} images and will not shrink {_hw(stored)} to {_hw(wanted)}, "
                f"which would lose pixels")
    return ""


def _fit_hint(name: str, stored: Shape, offered: Shape, wanted: Shape, resizable: bool) -> str:
    problem = _impossible(stored, wanted, resizable)
    if problem:
        return (f"--fit-input cannot fix this ({problem}); pick a model built for "
                f"{format_shape(offered)} inputs or another dataset")
    what = []
    if _hw(stored) != _hw(wanted):
        what.append(f"{'upscale' if resizable else 'zero-pad'} them to {_hw(wanted)}")
    if stored[2] != wanted[2]:
        what.append(f"repeat the grey channel {wanted[2]} times")
    return (f"pass --fit-input to {' and '.join(what)}, or pick a model built for "
            f"{format_shape(offered)} inputs or another dataset")


def _hw(shape: Shape) -> str:
    return f"{shape[0]}x{shape[1]}"
