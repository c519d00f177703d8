"""The training stage (mp2_train_stage.py): training the MP² predictor from a parameter dataset (loaded,
checked and split into training and held-out snapshots by paramset).

    snaps = paramset.load(dirs, model.layout, dataset.name, cross_dataset=False)
    parts = paramset.split(paramset.steps_of(snaps), holdout=0.2)
    trainer = training.Trainer(model, Predictor(model.layout, seed=0), "result", lr=1e-3)
    training.train_epoch(trainer, snaps, parts.train, dataset, ...)

    flags     the script's flags, importable without TensorFlow (--help and a bad flag answer at once)
    state     its output directory and --resume state
    training  the optimizer steps of the result (or MSE) loss, and an epoch of them

The submodules are imported when first used, so `predictor.stage.flags` loads without TensorFlow.
"""
from __future__ import annotations

import importlib

__all__ = ["flags", "state", "training"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"predictor.stage.{name}")
    raise AttributeError(f"module 'predictor.stage' has no attribute {name!r}")
