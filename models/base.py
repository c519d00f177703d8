"""A target model: its parameter layout plus a pure forward function of the parameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from models.layout import Layout, glorot_init

# logits = forward(params, images): params maps tensor names to tf tensors (variables, predictor
# outputs or constants from a snapshot), images is a float32 [batch, H, W, C] tensor in [0, 1].
Forward = Callable[[Mapping[str, object], object], object]


@dataclass(frozen=True)
class Model:
    name: str
    input_shape: tuple[int, int, int]  # H, W, C
    layout: Layout
    forward: Forward
    spec: str | None = None  # the --model value a model of one's own was built from (file.py:FUNCTION)

    @property
    def classes(self) -> int:
        return self.layout.classes

    def init(self, seed: int) -> dict[str, np.ndarray]:
        """Initial parameter values (Glorot-uniform weights, zero biases), reproducible by seed."""
        return glorot_init(self.layout, seed)

    def init_vector(self, seed: int) -> np.ndarray:
        return self.layout.flatten(self.init(seed))
