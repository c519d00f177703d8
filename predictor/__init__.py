"""The MP² predictor: a small network that maps a model's pushed group to its full parameter set.

    from predictor import Predictor, save_checkpoint, load_checkpoint
    pred = Predictor(model.layout, seed=0)            # or weights=load_checkpoint(path, layout)[0]
    full = pred(pushed)                               # [P] -> [total], [B, P] -> [B, total]
    logits = model.forward(pred.predict_params(pushed), images)

    predictor.stage   its training from a parameter dataset (mp2_train_stage.py)

The names below are imported when first used, so `predictor.stage.flags` loads without TensorFlow.
"""
from __future__ import annotations

import importlib

_FROM = {"Predictor": "network", "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
         "read_meta": "checkpoint", "resolve_path": "checkpoint", "CheckpointError": "checkpoint"}
__all__ = list(_FROM)


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f"predictor.{_FROM[name]}"), name)
    raise AttributeError(f"module 'predictor' has no attribute {name!r}")
