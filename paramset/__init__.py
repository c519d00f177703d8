"""The hierarchical parameter dataset: snapshots of a model taken during ordinary training.

A directory of shards (pickle-free .npz, one array per layout tensor with a leading snapshot axis,
so the data is organised per layer) and a manifest.json that names the model, class count, layout
fingerprint and dataset, and for each snapshot its step, epoch and test accuracy. Shards and the
manifest are written atomically, one shard at a time: a run killed mid-way leaves a readable
dataset of every shard completed.

    store.py     writing (ParamSetWriter) and reading (read); is_dataset, clear, pushed_groups for a
                 run's own directory (online MP²'s controller)
    collect.py   SnapshotCollector: the PS's snapshots during a baseline run (--snapshot-every)
    trainset.py  load (read, with the checks a training stage needs), split (train / held out), steps_of

Every problem with a dataset is a ParamSetError whose message says what to do.
"""
from paramset.collect import SnapshotCollector
from paramset.store import ParamSetError, ParamSetWriter, Snapshots, clear, is_dataset, pushed_groups, read
from paramset.trainset import Split, load, split, steps_of

__all__ = ["ParamSetError", "ParamSetWriter", "SnapshotCollector", "Snapshots", "Split", "clear", "is_dataset", "load",
           "pushed_groups", "read", "split", "steps_of"]
