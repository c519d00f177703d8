"""benchmarks/ps_step.py: a tiny real run (LeNet-5, 2 worker processes) prints and writes both figures."""
from __future__ import annotations

import json
import re

import pytest

from tests.cluster import check_provenance, run

pytestmark = pytest.mark.cluster

SCRIPT = "benchmarks/ps_step.py"


def test_tiny_run_reports_before_and_after_for_each_method(tmp_path):
    out = tmp_path / "ps_step"
    done = run(SCRIPT, "--model", "lenet5", "--workers", "2", "--methods", "baseline", "mp2",
               "--steps", "2", "--warmup", "1", "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]

    # The printed table: one row per method, with the before and after figures and their ratio.
    for method in ("baseline", "mp2"):
        row = re.search(rf"^\| lenet5 \| 2 \| {method} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", done.stdout, re.M)
        assert row, f"no {method} row in:\n{done.stdout}"
        before, after, ratio = map(float, row.groups())
        assert before > 0 and after > 0 and ratio > 0

    saved = json.loads((out / "results.json").read_text())
    assert saved["command"].startswith(".venv/bin/python benchmarks/ps_step.py --model lenet5")
    assert saved["machine"]["cores"] >= 1
    check_provenance(saved["provenance"])
    assert [(r["model"], r["workers"], r["method"]) for r in saved["results"]] == [("lenet5", 2, "baseline"), ("lenet5", 2, "mp2")]
    for r in saved["results"]:
        for path in ("before", "after"):
            assert r[path]["ps"]["steps"] == 2 and len(r[path]["ps_step_seconds"]) == 2
            assert r[path]["ps"]["median_ms"] > 0
            assert r[path]["worker"]["steps"] == 2 * 2  # every worker's every measured step
        assert r["ratio"] == r["after"]["ps"]["median_ms"] / r["before"]["ps"]["median_ms"]
        # The old path, reimplemented, computes the same global model as the real PSGraph.
        assert r["paths_max_abs_difference"] < 1e-6
        # The traced after-step is the real PSGraph step: its queue ops and the mean are in it.
        assert {"QueueDequeueV2", "AddN", "QueueEnqueueV2"} <= set(r["after_traced_step"]["ms_by_op_type"])
    assert saved["results"][0]["up_floats"] == 44426 and saved["results"][1]["up_floats"] == 2572  # whole model vs pushed group

    readme = (out / "README.md").read_text()
    assert saved["command"] in readme
    assert "| lenet5 | 2 | baseline |" in readme and "| lenet5 | 2 | mp2 |" in readme


def test_bad_worker_count_is_one_line(tmp_path):
    done = run(SCRIPT, "--workers", "0", "--out", str(tmp_path / "never"))
    assert done.returncode == 2
    assert "--workers: must be at least 1, got 0" in done.stdout and "Traceback" not in done.stdout
    assert not (tmp_path / "never").exists()
