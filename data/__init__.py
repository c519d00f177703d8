"""Datasets for MP² training: loaders for the standard files, worker partitioning, mixup.

    ds = data.load("fashion_mnist", data_dir=None)       # Dataset: float32 NHWC in [0, 1]
    ds = data.load("fashion_mnist", image_shape=(32, 32, 3), fit_input=True, train_images=10000)
    ds.provenance                                        # where it came from, what was done
    schedule = data.Schedule(len(ds.train_y), workers=8, worker_batch=125, seed=0)
    idx = schedule.worker_indices(epoch, step, worker)
    x, y_soft = data.mixup(ds.train_x[idx], ds.train_y[idx], ds.classes, 1.0, rng)

Scripts add the data flags with data.flags.add_flags(parser) and load with
data.flags.from_args(args, image_shape, seed).

Every problem a user can fix (missing or damaged files, a model/dataset mismatch) raises
DataError with a message that says what to do.
"""
from __future__ import annotations

from data import flags
from data.batches import Schedule, mixup, one_hot
from data.dataset import Dataset
from data.errors import DataError
from data.loader import NAMES, load
from data.synthesis import synthetic

__all__ = ["NAMES", "DataError", "Dataset", "Schedule", "flags", "load", "mixup", "one_hot",
           "synthetic"]
