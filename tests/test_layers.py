"""Imports point down the layers only: entry scripts → reports, benchmarks → runtime → runtime.methods →
predictor, wnn → paramset, compression → models, data → helpers. A module may import its own
package and anything below it, never above (read from the source, imports inside functions included)."""
from __future__ import annotations

import ast

import pytest

from tests.cluster import ROOT

pytestmark = pytest.mark.unit

# Lower number: lower layer.
RANK = {"helpers": 0,
        "models": 1, "data": 1,
        "paramset": 2, "compression": 2,
        "predictor": 3, "wnn": 3,
        "runtime.methods": 4,
        "runtime": 5,
        "reports": 6, "benchmarks": 7}


def layer(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest RANK key it falls under)."""
    hits = [key for key in RANK if module == key or module.startswith(key + ".")]
    return max(hits, key=len) if hits else None


def imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_every_import_points_down_the_layers():
    upward = []
    for key in RANK:
        base = ROOT / key.replace(".", "/")
        files = [base.with_suffix(".py")] if base.with_suffix(".py").exists() else sorted(base.rglob("*.py"))
        assert files, key
        for path in files:
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mine = layer(module)
            for name in imports(path):
                theirs = layer(name)
                if theirs is not None and theirs != mine and RANK[theirs] >= RANK[mine]:
                    upward.append(f"{path.relative_to(ROOT)} ({mine}) imports {name} ({theirs})")
    assert upward == []


def test_the_rule_would_see_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from runtime.rundir import RunDir\n")
    assert "runtime.rundir" in imports(bad) and RANK[layer("runtime.rundir")] > RANK[layer("predictor.stage.state")]
