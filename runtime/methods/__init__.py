"""The training methods the runtime can run; each is one small class (see base.py).

    method = methods.build("topk", layout, TopKOptions(ratio=0.01), run_info)

Adding a method is one file here (its options dataclass and its class) and a line in METHODS.
"""
from __future__ import annotations

from typing import Any, Mapping

from models import Layout
from runtime.methods.base import Method, PSContext, RunInfo
from runtime.methods.options import Option, Options
from runtime.methods.baseline import Baseline
from runtime.methods.localsgd import LocalSGD
from runtime.methods.mp2 import MP2
from runtime.methods.powersgd import PowerSGD
from runtime.methods.sparse import DGC, TopK
from runtime.methods.sparseloco import SparseLoCo
from runtime.methods.streaming import Streaming
from runtime.methods.sync import Sync
from runtime.methods.wnn import WNN

METHODS: dict[str, type[Method]] = {m.name: m for m in (Baseline, Sync, MP2, TopK, DGC, WNN, LocalSGD, PowerSGD, SparseLoCo,
                                                          Streaming)}


def build(name: str, layout: Layout, opts: Options | Mapping[str, Any], run: RunInfo) -> Method:
    """The method `name`; `opts` its options, or their JSON (a record's or a handshake's: missing ones default)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    method = METHODS[name]
    return method(layout, opts if isinstance(opts, Options) else method.Options.from_json(opts), run)


def shardable_methods() -> list[str]:
    """The methods whose PS update can be split over several PS tasks (`Method.shardable`)."""
    return [name for name, method in METHODS.items() if method.shardable]


def all_options() -> dict[str, list[tuple[str, Option]]]:
    """Every method option flag, with the methods that take it (a flag may serve several)."""
    out: dict[str, list[tuple[str, Option]]] = {}
    for name, method in METHODS.items():
        for option in method.Options.described():
            out.setdefault(option.flag, []).append((name, option))
    return out


__all__ = ["METHODS", "Method", "Option", "Options", "PSContext", "RunInfo", "all_options", "build", "shardable_methods"]
