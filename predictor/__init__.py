"""The MP² predictor: a small network that maps a model's pushed group to its full parameter set.

    from predictor import Predictor, save_checkpoint, load_checkpoint
    pred = Predictor(model.layout, seed=0)            # or weights=load_checkpoint(path, layout)[0]
    full = pred(pushed)                               # [P] -> [total], [B, P] -> [B, total]
    logits = model.forward(pred.predict_params(pushed), images)
"""
from predictor.checkpoint import CheckpointError, load_checkpoint, read_meta, resolve_path, save_checkpoint
from predictor.network import Predictor

__all__ = ["Predictor", "save_checkpoint", "load_checkpoint", "read_meta", "resolve_path", "CheckpointError"]
