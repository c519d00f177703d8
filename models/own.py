"""A model of one's own: `--model path/to/file.py:NAME`, where NAME(classes) returns a `models.Model`.

The file builds its layout with `models.LayoutBuilder` (conv and dense layers, each a weight and a bias;
the first `pushed_layers` are pushed) and gives a pure `forward(params, images) -> logits` (see
docs/usage.md, "A model of your own"). The file is run as Python: load only files you trust.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from models.base import Model

KINDS = ("conv", "dense")  # what the predictor can emit (predictor/network.py decodes each)
SEPARATOR = ".py:"


def is_spec(name: str) -> bool:
    return SEPARATOR in str(name)


def absolute(name: str) -> str:
    """The spec with its file made absolute against this directory."""
    path, _, function = str(name).rpartition(":")
    return f"{os.path.abspath(os.path.expanduser(path))}:{function}"


def load(name: str, classes: int) -> Model:
    """NAME(classes) from the file, checked; ValueError in one line for anything wrong."""
    path_text, _, function = str(name).rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ValueError(f"--model {name}: no file {path} (write --model path/to/file.py:FUNCTION)")
    module_name = f"mp2_user_model_{abs(hash(str(path.resolve())))}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's file: whatever it raises is theirs to fix, in one line
            raise ValueError(f"--model {name}: {path} failed to load: {type(e).__name__}: {e}") from None
        sys.modules[module_name] = module
    build = getattr(sys.modules[module_name], function, None)
    if not callable(build):
        raise ValueError(f"--model {name}: {path} has no function {function!r}")
    try:
        model = build(classes)
    except Exception as e:
        raise ValueError(f"--model {name}: {function}({classes}) raised {type(e).__name__}: {e}") from None
    if not isinstance(model, Model):
        raise ValueError(f"--model {name}: {function}({classes}) returned {type(model).__name__}, not a models.Model "
                         f"(build one with models.LayoutBuilder and a forward function)")
    check(model, classes, f"--model {name}")
    return model


def check(model: Model, classes: int, where: str) -> None:
    """What every part of the runtime relies on: the class count, and layers the predictor can emit."""
    if model.layout.classes != classes:
        raise ValueError(f"{where}: the layout has {model.layout.classes} classes but {classes} were asked for")
    if len(model.input_shape) != 3 or min(model.input_shape) < 1:
        raise ValueError(f"{where}: input_shape must be (height, width, channels); got {model.input_shape}")
    for layer in model.layout.layers():
        if layer.kind not in KINDS:
            raise ValueError(f"{where}: layer {layer.name} is of kind {layer.kind!r}, which the predictor cannot "
                             f"predict; it predicts {' and '.join(KINDS)} layers (a weight and a bias each)")
        shapes = [p.shape for p in layer.params]
        rank = 4 if layer.kind == "conv" else 2
        if len(shapes) != 2 or len(shapes[0]) != rank or shapes[1] != (shapes[0][-1],):
            raise ValueError(f"{where}: layer {layer.name} ({layer.kind}) has tensors {shapes}; a {layer.kind} layer is "
                             f"a weight of {rank} dimensions and a bias of its last dimension")
