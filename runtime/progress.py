"""Progress: one line rewritten in place on a terminal, a plain line now and then in a log."""
from __future__ import annotations

import sys
import time

BAR_WIDTH = 24


class Progress:
    def __init__(self, total: int, label: str, lines: int = 4) -> None:
        self.total, self.label = total, label
        self.tty = sys.stdout.isatty()
        self.every = max(1, total // max(1, lines))
        self.start = time.monotonic()

    def update(self, done: int, values: dict[str, float]) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        elapsed = time.monotonic() - self.start
        if self.tty:
            filled = BAR_WIDTH * done // max(1, self.total)
            bar = "=" * filled + "." * (BAR_WIDTH - filled)
            end = "\n" if done >= self.total else ""
            sys.stdout.write(f"\r{self.label} {done}/{self.total} [{bar}] {shown} ({elapsed:.0f}s)\033[K{end}")
            sys.stdout.flush()
        elif done % self.every == 0 and done < self.total:
            print(f"{self.label} {done}/{self.total} {shown} ({elapsed:.1f}s)", flush=True)
