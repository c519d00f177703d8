"""Target models as parameter layouts plus pure forward functions.

    model = models.get("resnet18", classes=10)
    model.layout.total, model.layout.pushed         # sizes, derived from the layout
    logits = model.forward(params, images)          # params: name -> tensor
"""
from __future__ import annotations

from typing import Callable

from models.base import Model
from models.layout import PREDICTED, PUSHED, Layer, Layout, ParamSpec
from models import alexnet, lenet5, resnet, vgg

_BUILDERS: dict[str, Callable[[int], Model]] = {
    "lenet5": lenet5.build,
    "alexnet": alexnet.build,
    "vgg15": vgg.build,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
}
NAMES: tuple[str, ...] = tuple(_BUILDERS)


def get(name: str, classes: int = 10) -> Model:
    """The model called `name` with a classifier for `classes` classes."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(NAMES)}")
    if classes < 2:
        raise ValueError(f"a model needs at least 2 classes, got {classes}")
    return _BUILDERS[key](classes)


__all__ = ["Model", "Layout", "Layer", "ParamSpec", "PUSHED", "PREDICTED", "NAMES", "get"]
