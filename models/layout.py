"""A model's parameters as data: an ordered list of named tensors, each pushed or predicted.

Everything that needs a size, an offset or a slice (workers, the PS, the predictor, the snapshot
files) derives it from a `Layout`; nothing else types a parameter count by hand.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

PUSHED = "pushed"
PREDICTED = "predicted"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor: `conv1/w` of shape (5, 5, 1, 6), part of layer `conv1`."""

    name: str
    shape: tuple[int, ...]
    group: str  # PUSHED or PREDICTED
    layer: str  # the layer it belongs to, e.g. "conv1"
    kind: str  # "conv" or "dense": how the predictor decodes the layer

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layer:
    """The tensors of one layer (weight and bias), which the predictor emits as one block."""

    name: str
    kind: str
    group: str
    params: tuple[ParamSpec, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.params)


@dataclass(frozen=True)
class Layout:
    """The ordered parameter layout of a model, each tensor in the pushed or the predicted group.

    The flat vector keeps the model's own order whatever is pushed; `split` and `join` move between
    it and the (pushed, predicted) pair, each group in layout order.
    """

    model: str
    classes: int
    params: tuple[ParamSpec, ...]
    _offsets: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = [p.group for p in self.params]
        if any(g not in (PUSHED, PREDICTED) for g in groups):
            raise ValueError(f"{self.model}: a group must be {PUSHED!r} or {PREDICTED!r}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.model}: duplicate parameter names")
        offsets, start = {}, 0
        for p in self.params:
            offsets[p.name] = (start, start + p.size)
            start += p.size
        object.__setattr__(self, "_offsets", offsets)

    # --- sizes -----------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return sum(p.size for p in self.params)

    @property
    def pushed(self) -> int:
        """Number of values in the pushed group."""
        return sum(p.size for p in self.params if p.group == PUSHED)

    def pushed_layers(self) -> list[str]:
        """Names of the pushed layers, in layout order: what identifies a push set."""
        return [layer.name for layer in self.layers(PUSHED)]

    def with_push(self, choice: str) -> "Layout":
        """This layout with another pushed group: a preset or a comma-separated list of layers.

        Presets: "front" (the model's own front layers), "front+head" (those plus the classifier,
        the last layer), "all" (every layer: nothing is predicted).
        """
        names = [layer.name for layer in self.layers()]
        front = [layer.name for layer in self.layers(PUSHED)]
        presets = {"front": front, "front+head": front + [names[-1]], "all": names}
        if choice in presets:
            chosen = set(presets[choice])
        else:
            chosen = {n.strip() for n in choice.split(",") if n.strip()}
            unknown = sorted(chosen - set(names))
            if unknown or not chosen:
                raise ValueError(
                    f"--push {choice!r}: {', '.join(unknown) or 'no layer'} is not a layer of {self.model}; "
                    f"give a preset ({', '.join(presets)}) or layer names from: {', '.join(names)}"
                )
        params = tuple(replace(p, group=PUSHED if p.layer in chosen else PREDICTED) for p in self.params)
        return Layout(self.model, self.classes, params)

    @property
    def predicted(self) -> int:
        return self.total - self.pushed

    def group(self, group: str) -> tuple[ParamSpec, ...]:
        return tuple(p for p in self.params if p.group == group)

    def layers(self, group: str | None = None) -> list[Layer]:
        """Layers in order, each with its tensors; optionally only those of one group."""
        layers: dict[str, list[ParamSpec]] = {}
        for p in self.params:
            layers.setdefault(p.layer, []).append(p)
        out = [Layer(name, ps[0].kind, ps[0].group, tuple(ps)) for name, ps in layers.items()]
        return [l for l in out if group is None or l.group == group]

    def offset(self, name: str) -> tuple[int, int]:
        """[start, stop) of a tensor in the flat parameter vector."""
        return self._offsets[name]

    # --- identity --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of everything that fixes the meaning of a flat vector (not the push set)."""
        desc = [self.model, self.classes, [[p.name, list(p.shape)] for p in self.params]]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "model": self.model,
            "classes": self.classes,
            "fingerprint": self.fingerprint(),
            "total": self.total,
            "pushed": self.pushed,
            "predicted": self.predicted,
            "pushed_layers": self.pushed_layers(),
            "tensors": [
                {"name": p.name, "shape": list(p.shape), "size": p.size, "group": p.group}
                for p in self.params
            ],
        }

    # --- flat vector <-> named tensors (numpy or TensorFlow) --------------------------------
    def flatten(self, params: Mapping[str, object], group: str | None = None):
        """Concatenate named tensors into one vector (numpy in, numpy out; else a tf.Tensor)."""
        specs = self.params if group is None else self.group(group)
        values = [params[p.name] for p in specs]
        if all(isinstance(v, np.ndarray) for v in values):
            return np.concatenate([v.reshape(-1) for v in values]).astype(np.float32, copy=False)
        import tensorflow as tf

        return tf.concat([tf.reshape(v, [-1]) for v in values], axis=0)

    def unflatten(self, vector, group: str | None = None) -> dict:
        """Split a flat vector (of the whole layout, or of one group) into named tensors."""
        specs = self.params if group is None else self.group(group)
        expected = sum(p.size for p in specs)
        if isinstance(vector, np.ndarray) and vector.shape != (expected,):
            raise ValueError(f"{self.model}: expected a vector of {expected} values, got shape {vector.shape}")
        reshape = np.reshape if isinstance(vector, np.ndarray) else _tf().reshape
        out, start = {}, 0
        for p in specs:
            out[p.name] = reshape(vector[start : start + p.size], p.shape)
            start += p.size
        return out

    def _runs(self, group: str) -> list[tuple[int, int]]:
        """[start, stop) ranges of the flat vector that hold `group`, adjacent tensors merged."""
        runs: list[list[int]] = []
        for p in self.params:
            if p.group != group:
                continue
            a, b = self._offsets[p.name]
            if runs and runs[-1][1] == a:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        return [(a, b) for a, b in runs]

    def split(self, vector):
        """(pushed, predicted) parts of a flat vector [total] or a batch [B, total]; numpy or tf."""
        parts = []
        for group in (PUSHED, PREDICTED):
            pieces = [vector[..., a:b] for a, b in self._runs(group)]
            if isinstance(vector, np.ndarray):
                empty = np.zeros((*vector.shape[:-1], 0), vector.dtype)
                parts.append(np.concatenate(pieces, axis=-1) if pieces else empty)
            else:
                tf = _tf()
                parts.append(tf.concat(pieces, axis=-1) if pieces else vector[..., :0])
        return parts[0], parts[1]

    def join(self, pushed, predicted):
        """The flat vector (or batch) from its pushed and predicted parts: the inverse of split."""
        cursors = {PUSHED: 0, PREDICTED: 0}
        sources = {PUSHED: pushed, PREDICTED: predicted}
        pieces = []
        # Walk the layout in order, taking each run from its group's vector.
        runs = sorted([(a, b, g) for g in (PUSHED, PREDICTED) for a, b in self._runs(g)])
        for a, b, g in runs:
            c = cursors[g]
            pieces.append(sources[g][..., c : c + (b - a)])
            cursors[g] = c + (b - a)
        if isinstance(pushed, np.ndarray) and isinstance(predicted, np.ndarray):
            return np.concatenate(pieces, axis=-1).astype(np.float32, copy=False)
        return _tf().concat(pieces, axis=-1)


def _tf():
    import tensorflow as tf  # only when TensorFlow tensors are involved

    return tf


class LayoutBuilder:
    """Collects conv and dense layers in order; `pushed_layers` names the front layers pushed."""

    def __init__(self, model: str, classes: int) -> None:
        self.model, self.classes = model, classes
        self._layers: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = []

    def conv(self, name: str, k: int, cin: int, cout: int) -> None:
        self._layers.append((name, "conv", (k, k, cin, cout), (cout,)))

    def dense(self, name: str, din: int, dout: int) -> None:
        self._layers.append((name, "dense", (din, dout), (dout,)))

    def build(self, pushed_layers: int) -> Layout:
        params = []
        for i, (name, kind, w, b) in enumerate(self._layers):
            group = PUSHED if i < pushed_layers else PREDICTED
            params.append(ParamSpec(f"{name}/w", w, group, name, kind))
            params.append(ParamSpec(f"{name}/b", b, group, name, kind))
        return Layout(self.model, self.classes, tuple(params))


def glorot_init(layout: Layout, seed: int) -> dict[str, np.ndarray]:
    """Glorot-uniform weights and zero biases, as Keras initialises Conv2D and Dense; seeded."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in layout.params:
        if len(p.shape) == 1:
            out[p.name] = np.zeros(p.shape, np.float32)
            continue
        receptive = math.prod(p.shape[:-2])
        fan_in, fan_out = receptive * p.shape[-2], receptive * p.shape[-1]
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        out[p.name] = rng.uniform(-limit, limit, p.shape).astype(np.float32)
    return out
