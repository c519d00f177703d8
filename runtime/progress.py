"""Progress: a Progbar on a terminal, a plain line now and then in a log."""
from __future__ import annotations

import sys
import time

import tensorflow as tf


class Progress:
    def __init__(self, total: int, label: str, lines: int = 4) -> None:
        self.total, self.label = total, label
        self.tty = sys.stdout.isatty()
        self.bar = tf.keras.utils.Progbar(total, stateful_metrics=None) if self.tty else None
        self.every = max(1, total // max(1, lines))
        self.start = time.monotonic()

    def update(self, done: int, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(done, list(values.items()))
        elif done % self.every == 0 and done < self.total:
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"{self.label} {done}/{self.total} {shown} ({time.monotonic() - self.start:.1f}s)", flush=True)
