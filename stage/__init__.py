"""Plumbing for mp2_train_stage.py: training the MP² predictor from a parameter dataset.

    snaps = stage.snapshots.load(dirs, model.layout, dataset.name, cross_dataset=False)
    parts = stage.snapshots.split(stage.snapshots.steps_of(snaps), holdout=0.2)
    trainer = stage.training.Trainer(model, Predictor(model.layout, seed=0), "result", lr=1e-3)
    stage.training.train_epoch(trainer, snaps, parts.train, dataset, ...)
"""
from stage import adam, snapshots, state, training
from stage.snapshots import StageError

__all__ = ["StageError", "adam", "snapshots", "state", "training"]
