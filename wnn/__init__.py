"""The Weight Nowcaster Network (WNN; Jang et al., ICML 2023), a comparison method for MP².

Per scalar weight, a small network reads its last 5 recorded values and predicts where it will be
some recordings later; the PS overwrites the model with the prediction periodically.

    wnn.network      the nowcaster: parameters as data, `predict(params, history)`
    wnn.features     the per-weight normalisation, numpy or TensorFlow
    wnn.checkpoint   wnn.npz: the conv, dense and bias nowcasters with their metadata
    wnn.training     training pairs from a parameter dataset, the training loop, evaluation
    wnn.Nowcaster    the PS's graph ops: a ring buffer of recordings and the jumped model
"""
from wnn.checkpoint import WnnCheckpointError, load, save
from wnn.nowcaster import Nowcaster

__all__ = ["Nowcaster", "WnnCheckpointError", "load", "save"]
