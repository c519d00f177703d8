"""Datasets for MP² training: loaders for the standard files, worker partitioning, mixup.

    ds = data.load("fashion_mnist", data_dir=None)       # Dataset: float32 NHWC in [0, 1]
    schedule = data.Schedule(len(ds.train_y), workers=8, worker_batch=125, seed=0)
    idx = schedule.worker_indices(epoch, step, worker)
    x, y_soft = data.mixup(ds.train_x[idx], ds.train_y[idx], ds.classes, 1.0, rng)

Every problem a user can fix (missing or damaged files, a model/dataset mismatch) raises
DataError with a message that says what to do.
"""
from __future__ import annotations

from data.batches import Schedule, mixup, one_hot
from data.dataset import Dataset
from data.errors import DataError
from data.loader import NAMES, load
from data.synthesis import synthetic

__all__ = ["NAMES", "DataError", "Dataset", "Schedule", "load", "mixup", "one_hot", "synthetic"]
