"""The hierarchical parameter dataset: snapshots of a model taken during ordinary training.

A directory of shards (pickle-free .npz, one array per layout tensor with a leading snapshot axis,
so the data is organised per layer) and a manifest.json that names the model, class count, layout
fingerprint and dataset, and for each snapshot its step, epoch and test accuracy. Shards and the
manifest are written atomically, one shard at a time: a run killed mid-way leaves a readable
dataset of every shard completed.
"""
from paramset.store import ParamSetError, ParamSetWriter, Snapshots, read

__all__ = ["ParamSetError", "ParamSetWriter", "Snapshots", "read"]
