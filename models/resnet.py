"""ResNet-18/34/50 (downsized, no batch norm) for 32x32x3 images, from one parameterised builder.

Stem: conv 3x3x32 + ReLU + max pool 2 (16x16). Four stages of widths 32, 64, 128, 256 with strides
1, 2, 2, 2 (16 -> 16 -> 8 -> 4 -> 2), then average pool 2 (1x1), flatten, dense `classes`.

- "basic" units (ResNet-18: [2, 2, 2, 2]; ResNet-34: [3, 4, 6, 3]): two 3x3 SAME convs,
  out = relu(c2(relu(c1(x))) + shortcut(x)), c1 carrying the stage's stride. The shortcut is the
  identity, or a 3x3 conv with the stage's stride ("sc") in the first unit of stages 2-4.
- "bottleneck" units (ResNet-50: [3, 4, 6, 3]): 1x1 conv to width, 3x3 conv at width with the
  stage's stride, 1x1 conv to 4 * width; out = relu(c3(relu(c2(relu(c1(x))))) + shortcut(x)).
  The shortcut is a projection wherever the shape changes (the first unit of every stage, stage 1
  included since the stem has 32 channels, not 128): a 1x1 conv with the stage's stride, the
  standard choice for bottleneck ResNets. Elsewhere it is the identity.

Shortcut convs have a bias and no activation. Layer names: "stem", "s{stage}u{unit}c{k}",
"s{stage}u{unit}sc", "fc"; a unit's shortcut follows its convs. The pushed group is the stem and
stages 1 and 2 (every conv layer in them, shortcuts included), which come first in layout order.
ResNet-18: pushed 185,664 of 3,139,274 values with 10 classes (21 layers).

Initial values are the shared Glorot-uniform weights and zero biases (Model.init): for a 3x3 conv
with cin == cout this is variance 1/fan_in, which halves a signal's variance through each ReLU
branch, so the residual sums stay bounded at init without batch norm and no special init is
needed: at init the logits are O(0.1) for all three depths and every weight gets a gradient of
RMS 1e-4..5e-3 under a cross-entropy loss (the tests check finite logits for all, and non-zero
gradients at every tensor of ResNet-18).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import tensorflow as tf

from models.base import Model
from models.layout import LayoutBuilder

STEM_WIDTH = 32
WIDTHS = (32, 64, 128, 256)
STRIDES = (1, 2, 2, 2)
PUSHED_STAGES = 2  # the stem and stages 1..PUSHED_STAGES are the pushed group

CONFIGS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


class Conv(NamedTuple):
    name: str  # layer name; tensors are f"{name}/w" and f"{name}/b"
    k: int
    cin: int
    cout: int
    stride: int


class Unit(NamedTuple):
    stage: int  # 1-based
    convs: tuple[Conv, ...]  # the residual branch, ReLU between them
    shortcut: Conv | None  # None: identity


class Arch(NamedTuple):
    stem: Conv
    units: tuple[Unit, ...]
    features: int  # channels after the last stage = fan-in of "fc"


def arch(kind: str, counts: tuple[int, ...]) -> Arch:
    """The conv layers of a ResNet with `kind` units ("basic"/"bottleneck"), `counts` per stage."""
    if kind not in ("basic", "bottleneck"):
        raise ValueError(f"unknown residual unit kind {kind!r}")
    stem = Conv("stem", 3, 3, STEM_WIDTH, 1)
    units, cin = [], STEM_WIDTH
    for s, (width, stride, count) in enumerate(zip(WIDTHS, STRIDES, counts), start=1):
        for u in range(1, count + 1):
            st = stride if u == 1 else 1
            pre = f"s{s}u{u}"
            if kind == "basic":
                cout = width
                convs = (Conv(f"{pre}c1", 3, cin, width, st), Conv(f"{pre}c2", 3, width, width, 1))
                sc_k = 3
            else:
                cout = 4 * width
                convs = (
                    Conv(f"{pre}c1", 1, cin, width, 1),
                    Conv(f"{pre}c2", 3, width, width, st),
                    Conv(f"{pre}c3", 1, width, cout, 1),
                )
                sc_k = 1
            project = st != 1 or cin != cout
            units.append(Unit(s, convs, Conv(f"{pre}sc", sc_k, cin, cout, st) if project else None))
            cin = cout
    return Arch(stem, tuple(units), cin)


def build(name: str, classes: int) -> Model:
    kind, counts = CONFIGS[name]
    a = arch(kind, counts)
    b = LayoutBuilder(name, classes)
    b.conv(a.stem.name, a.stem.k, a.stem.cin, a.stem.cout)
    pushed = 1
    for unit in a.units:
        for c in unit.convs + ((unit.shortcut,) if unit.shortcut else ()):
            b.conv(c.name, c.k, c.cin, c.cout)
            pushed += unit.stage <= PUSHED_STAGES
    b.dense("fc", a.features, classes)
    return Model(name, (32, 32, 3), b.build(pushed_layers=pushed), functools.partial(forward, a))


def resnet18(classes: int) -> Model:
    return build("resnet18", classes)


def resnet34(classes: int) -> Model:
    return build("resnet34", classes)


def resnet50(classes: int) -> Model:
    return build("resnet50", classes)


def forward(a: Arch, p, images):
    x = tf.nn.relu(_conv(images, p, a.stem))
    x = tf.nn.max_pool2d(x, 2, 2, "VALID")  # 16x16
    for unit in a.units:
        h = x
        for i, c in enumerate(unit.convs):
            h = _conv(h, p, c)
            if i < len(unit.convs) - 1:
                h = tf.nn.relu(h)
        x = tf.nn.relu(h + (_conv(x, p, unit.shortcut) if unit.shortcut else x))
    x = tf.nn.avg_pool2d(x, 2, 2, "VALID")  # 2x2 -> 1x1
    x = tf.reshape(x, [-1, a.features])
    return tf.matmul(x, p["fc/w"]) + p["fc/b"]


def _conv(x, p, c: Conv):
    return tf.nn.conv2d(x, p[f"{c.name}/w"], strides=c.stride, padding="SAME") + p[f"{c.name}/b"]
