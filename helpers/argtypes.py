"""Argument types with range checks, so every script rejects a bad number with one argparse line.

    p.add_argument("--epochs", type=argtypes.positive_int, default=5)
    p.add_argument("--lr", type=argtypes.positive_float, default=1e-3)

argparse turns the ArgumentTypeError into `script: error: argument --epochs: must be at least 1, got 0`
and exit code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    check.__name__ = f"int>={low}"
    return check


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def check(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    check.__name__ = f"int in {low}..{high}"
    return check


def float_in(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (an end is excluded when its *_open is set)."""

    def check(text: str) -> float:
        value = _float(text)
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            left = "(" if low_open else "["
            right = ")" if high_open or high == math.inf else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{low:g}, {high:g}{right}, got {value:g}")
        return value

    check.__name__ = "float"
    return check


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)
positive_float = float_in(0.0, low_open=True)
nonnegative_float = float_in(0.0)
fraction = float_in(0.0, 1.0, high_open=True)          # [0, 1)
open_fraction = float_in(0.0, 1.0, low_open=True)      # (0, 1]
any_float = float_in(-math.inf)
