"""A model's parameters as data: an ordered list of named tensors, each pushed or predicted.

Everything that needs a size, an offset or a slice (workers, the PS, the predictor, the snapshot
files) derives it from a `Layout`; nothing else types a parameter count by hand.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
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
    """The ordered parameter layout of a model; pushed tensors come first (the front layers)."""

    model: str
    classes: int
    params: tuple[ParamSpec, ...]
    _offsets: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = [p.group for p in self.params]
        if any(g not in (PUSHED, PREDICTED) for g in groups):
            raise ValueError(f"{self.model}: a group must be {PUSHED!r} or {PREDICTED!r}")
        if groups != sorted(groups, key=lambda g: g != PUSHED):
            raise ValueError(f"{self.model}: pushed tensors must precede predicted ones")
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
        """Number of values in the pushed group; they occupy vector[:pushed]."""
        return sum(p.size for p in self.params if p.group == PUSHED)

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
        """A short hash of everything that fixes the meaning of a flat vector."""
        desc = [self.model, self.classes, [[p.name, list(p.shape), p.group] for p in self.params]]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "model": self.model,
            "classes": self.classes,
            "fingerprint": self.fingerprint(),
            "total": self.total,
            "pushed": self.pushed,
            "predicted": self.predicted,
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
        base = self._offsets[specs[0].name][0] if specs else 0
        expected = sum(p.size for p in specs)
        if isinstance(vector, np.ndarray):
            if vector.shape != (expected,):
                raise ValueError(
                    f"{self.model}: expected a vector of {expected} values, got shape {vector.shape}"
                )
            return {
                p.name: vector[a - base : b - base].reshape(p.shape)
                for p in specs
                for a, b in [self._offsets[p.name]]
            }
        import tensorflow as tf

        return {
            p.name: tf.reshape(vector[a - base : b - base], p.shape)
            for p in specs
            for a, b in [self._offsets[p.name]]
        }


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
