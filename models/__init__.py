"""Target models as parameter layouts plus pure forward functions.

    model = models.get("resnet18", classes=10)
    model.layout.total, model.layout.pushed         # sizes, derived from the layout
    logits = model.forward(params, images)          # params: name -> tensor
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from models.base import Model
from models.layout import PREDICTED, PUSHED, Layer, Layout, LayoutBuilder, ParamSpec
from models import alexnet, lenet5, own, resnet, vgg

_BUILDERS: dict[str, Callable[[int], Model]] = {
    "lenet5": lenet5.build,
    "alexnet": alexnet.build,
    "vgg15": vgg.build,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
}
NAMES: tuple[str, ...] = tuple(_BUILDERS)


PUSH_HELP = ("the pushed group: front (the model's front layers), front+head (plus the classifier), "
             "all, or comma-separated layer names (python -m models NAME lists them)")


def get(name: str, classes: int = 10, push: str = "front") -> Model:
    """The model called `name` with a classifier for `classes` classes, pushing `push` (see PUSH_HELP)."""
    if classes < 2:
        raise ValueError(f"a model needs at least 2 classes, got {classes}")
    if own.is_spec(name):
        model = dataclasses.replace(own.load(name, classes), spec=str(name))
    else:
        key = name.lower().replace("-", "").replace("_", "")
        if key not in _BUILDERS:
            raise ValueError(f"unknown model {name!r}; known models: {', '.join(NAMES)}, or one of your own as "
                             f"path/to/file.py:FUNCTION")
        model = _BUILDERS[key](classes)
    if push == "front":
        return model
    return dataclasses.replace(model, layout=model.layout.with_push(push))


__all__ = ["PUSH_HELP", "Model", "Layout", "LayoutBuilder", "Layer", "ParamSpec", "PUSHED", "PREDICTED", "NAMES", "get"]
