"""The predictor's shape, derived from a target layout: input stage, weight names and shapes.

Both the network (which creates variables) and the checkpoint loader (which validates a file)
take their expectations from here, so the two cannot disagree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from models.layout import PREDICTED, Layout

GRID = 8  # the encoder works on 8x8 maps
FILTERS = 8  # conv filters per block
SE_REDUCTION = 4  # squeeze-and-excitation bottleneck = channels / 4
HIDDEN = 64  # decoder width; also 8x8 values for the conv heads
VECTOR_STAGE_BELOW = 4096  # "auto": the 1x1 "vector" input stage for pushed groups smaller than this
STAGES = ("vector", "grid")
FAITHFUL_HEAD_RANK = 1  # the reference's conv heads: one 1x1 conv of the 64 hidden units


@dataclass(frozen=True)
class WeightSpec:
    """One predictor variable; `init` says how initial_weights draws it."""

    name: str
    shape: tuple[int, ...]
    init: str  # "he" (before a ReLU), "he_positive", "glorot" (before a sigmoid), "zeros" or "head"


def choose_stage(layout: Layout, input_stage: str = "auto") -> str:
    if input_stage == "auto":
        return "vector" if layout.pushed < VECTOR_STAGE_BELOW else "grid"
    if input_stage not in STAGES:
        raise ValueError(f"input_stage must be 'auto', 'vector' or 'grid', got {input_stage!r}")
    return input_stage


def infer_stage(weights: Mapping[str, object]) -> str:
    """The input stage a set of predictor weights was built with (only "vector" has input/conv)."""
    return "vector" if "input/conv/w" in weights else "grid"


def grid_channels(pushed: int) -> int:
    return math.ceil(pushed / (GRID * GRID))


def head_channels(n: int) -> int:
    """Output channels of a conv head: its 8x8 x k output must hold the layer's n values."""
    return math.ceil(n / (GRID * GRID))


def head_name(layer: str) -> str:
    return f"head/{layer}/w"


def projection_name(layer: str) -> str:
    """A conv head's own hidden projection (only with a head rank above 1)."""
    return f"head/{layer}/proj"


def down_name(layer: str) -> str:
    """A dense head's own bottleneck (only with a dense rank): the 64 hidden units -> R values."""
    return f"head/{layer}/down"


def check_dense_rank(dense_rank: object) -> int | None:
    """None: the reference's dense heads (64 hidden units -> n values); R: 64 -> R -> n."""
    if dense_rank is None:
        return None
    if type(dense_rank) is not int or not 1 <= dense_rank < HIDDEN:
        raise ValueError(f"dense_rank must be a whole number from 1 to {HIDDEN - 1} (or none: the reference's "
                         f"heads), got {dense_rank!r}")
    return dense_rank


def infer_dense_rank(weights: Mapping[str, object]) -> int | None:
    """The dense-head rank a set of predictor weights was built with (None: the reference's heads)."""
    for name, value in weights.items():
        if name.startswith("head/") and name.endswith("/down"):
            return int(tuple(getattr(value, "shape", (0, 0)))[-1])
    return None


def check_head_rank(head_rank: object) -> int:
    if type(head_rank) is not int or head_rank < 1:
        raise ValueError(f"head_rank must be a whole number of at least 1, got {head_rank!r}")
    return head_rank


def infer_head_rank(weights: Mapping[str, object]) -> int:
    """The conv-head rank a set of predictor weights was built with: the input channels of its conv
    heads' 1x1 kernels (1 for the faithful heads, and for a layout whose predicted group has no conv layer)."""
    for name, value in weights.items():
        shape = tuple(getattr(value, "shape", ()))
        if name.startswith("head/") and name.endswith("/w") and len(shape) == 4:
            return int(shape[2])
    return FAITHFUL_HEAD_RANK


def blocks(stage: str) -> int:
    # The vector stage ends in a 2x2 pool (8x8 -> 4x4), so two blocks reach 1x1; the grid needs three.
    return 2 if stage == "vector" else 3


def weight_specs(layout: Layout, stage: str, head_rank: int = FAITHFUL_HEAD_RANK,
                 dense_rank: int | None = None) -> list[WeightSpec]:
    """Every predictor variable in creation (and RNG draw) order.

    head_rank R > 1: each predicted conv layer first projects the 64 hidden units to its own
    8x8 x R map (a dense [64, 64 R] kernel) and decodes that with a 1x1 conv R -> k, so its output
    is a rank-R image of its own features instead of the faithful rank-one image h[p] * w[c].
    dense_rank R: each predicted dense layer of n values is decoded through its own bottleneck,
    64 -> R -> n, instead of 64 -> n: R·(64 + n) weights instead of 64·n, for a model whose
    predicted group is mostly dense layers (LeNet-5) the bulk of the predictor.
    """
    check_head_rank(head_rank)
    check_dense_rank(dense_rank)
    p = layout.pushed
    if p == 0:
        raise ValueError(f"{layout.model}: the layout has no pushed group to predict from")
    if not layout.layers(PREDICTED):
        raise ValueError(f"{layout.model}: the layout has no predicted group")
    specs: list[WeightSpec] = []

    def se(prefix: str, channels: int) -> None:
        r = channels // SE_REDUCTION
        specs.extend([
            WeightSpec(f"{prefix}/se/w1", (1, 1, channels, r), "he_positive"),
            WeightSpec(f"{prefix}/se/b1", (r,), "zeros"),
            WeightSpec(f"{prefix}/se/w2", (1, 1, r, channels), "glorot"),
            WeightSpec(f"{prefix}/se/b2", (channels,), "zeros"),
        ])

    if stage == "vector":
        specs += [WeightSpec("input/conv/w", (1, 1, p, HIDDEN), "he"),
                  WeightSpec("input/conv/b", (HIDDEN,), "zeros")]
        se("input", HIDDEN)
        cin = 1
    else:
        cin = grid_channels(p)
    for i in range(1, blocks(stage) + 1):
        specs += [WeightSpec(f"block{i}/conv/w", (3, 3, cin, FILTERS), "he"),
                  WeightSpec(f"block{i}/conv/b", (FILTERS,), "zeros")]
        se(f"block{i}", FILTERS)
        cin = FILTERS
    specs += [WeightSpec("decoder/dense/w", (FILTERS, HIDDEN), "he"),
              WeightSpec("decoder/dense/b", (HIDDEN,), "zeros")]
    for layer in layout.layers(PREDICTED):
        if layer.kind == "conv":
            if head_rank > 1:
                specs.append(WeightSpec(projection_name(layer.name), (HIDDEN, GRID * GRID * head_rank), "glorot"))
            shape = (1, 1, head_rank, head_channels(layer.size))
        elif layer.kind == "dense":
            # Every dense layer is decoded from the 64 hidden units. (The ResNet reference took its
            # final classifier from the 8 flattened features instead; one rule keeps one builder.)
            if dense_rank is not None:
                specs.append(WeightSpec(down_name(layer.name), (HIDDEN, dense_rank), "glorot"))
            shape = (HIDDEN if dense_rank is None else dense_rank, layer.size)
        else:
            raise ValueError(f"{layout.model}: layer {layer.name} has unknown kind {layer.kind!r}")
        specs.append(WeightSpec(head_name(layer.name), shape, "head"))
    return specs


def weight_problems(weights: Mapping[str, object], specs: list[WeightSpec]) -> list[str]:
    """What is wrong with a set of weights for these specs (empty when they fit)."""
    problems = []
    expected = {s.name: s.shape for s in specs}
    for name, shape in expected.items():
        if name not in weights:
            problems.append(f"weight {name} is missing")
        elif tuple(getattr(weights[name], "shape", ())) != shape:
            problems.append(
                f"weight {name} has shape {tuple(weights[name].shape)}, expected {shape}"
            )
    problems += [f"unexpected weight {name}" for name in weights if name not in expected]
    return problems
