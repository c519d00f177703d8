"""TensorBoard event files for a run: the PS writes one point per epoch for each figure.

    tensorboard --logdir runs/      # every run directory shows up, the way TensorFlow users expect
"""
from __future__ import annotations

import math
from pathlib import Path

import tensorflow as tf


class EpochEvents:
    def __init__(self, directory: Path) -> None:
        self.writer = tf.compat.v1.summary.FileWriter(str(directory), graph=None)

    def write(self, epoch: int, figures: dict[str, float]) -> None:
        values = [tf.compat.v1.Summary.Value(tag=tag, simple_value=float(v))
                  for tag, v in figures.items() if v is not None and math.isfinite(float(v))]
        self.writer.add_summary(tf.compat.v1.Summary(value=values), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
