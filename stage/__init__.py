"""Plumbing for mp2_train_stage.py: training the MP² predictor from a parameter dataset (loaded, checked and
split into training and held-out snapshots by paramset).

    snaps = paramset.load(dirs, model.layout, dataset.name, cross_dataset=False)
    parts = paramset.split(paramset.steps_of(snaps), holdout=0.2)
    trainer = stage.training.Trainer(model, Predictor(model.layout, seed=0), "result", lr=1e-3)
    stage.training.train_epoch(trainer, snaps, parts.train, dataset, ...)

The submodules are imported when first used, so `stage.flags` (the script's flags) loads without TensorFlow.
"""
from __future__ import annotations

import importlib

__all__ = ["adam", "flags", "state", "training"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"stage.{name}")
    raise AttributeError(f"module 'stage' has no attribute {name!r}")
