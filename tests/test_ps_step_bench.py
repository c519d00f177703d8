"""benchmarks/ps_step.py: a tiny real run (LeNet-5, 2 worker processes) prints and writes the PS's time per step."""
from __future__ import annotations

import json
import math
import re
import statistics

import numpy as np
import pytest

from models import get
from runtime.methods.mp2_options import CORRECTION_RATIO
from tests.cluster import check_provenance, correction_entries, powersgd_sizes, run

SCRIPT = "benchmarks/ps_step.py"
LENET = get("lenet5", 10)
CONTROL = 16  # bytes of the control word that ends every reply
WORKERS = 2




@pytest.mark.cluster
def test_tiny_run_reports_time_and_bytes_for_each_method(tmp_path):
    from predictor import Predictor

    out = tmp_path / "ps_step"
    # MP² (a predictor beside it) and PowerSGD (two exchanges a step); Top-k's bytes: tests/test_runtime.py.
    methods = ("mp2", "powersgd")
    # Calls that gRPC delivered twice (a push that had landed, a wait for a reply not yet sent) are asked
    # about and recovered, as the product's worker does; a push sent again would shift every later exchange.
    done = run(SCRIPT, "--model", "lenet5", "--workers", str(WORKERS), "--methods", *methods,
               "--steps", "2", "--warmup", "1", "--out", str(out), timeout=600,
               env={"MP2_INJECT_ABORT": "0/2/push-twice,1/2/pull-twice"})
    assert done.returncode == 0, done.stdout[-3000:]

    saved = json.loads((out / "results.json").read_text())
    assert saved["command"].startswith(".venv/bin/python benchmarks/ps_step.py --model lenet5")
    assert saved["machine"]["cores"] >= 1
    check_provenance(saved["provenance"])
    rows = {r["method"]: r for r in saved["results"]}
    assert {m: r["recovered_calls"] for m, r in rows.items()} == {m: 2 for m in methods}
    assert [(r["model"], r["workers"], r["method"]) for r in saved["results"]] == [("lenet5", WORKERS, m) for m in methods]

    layout = LENET.layout
    assert (layout.total, layout.pushed) == (44426, 2572)
    p, q, dense = powersgd_sizes(LENET.layout, 2)
    assert (p, q, dense) == (472, 1270, 236)
    # Bytes one worker sends and receives per step, as the layout and the method's defaults imply.
    # MP²'s partial step: the pushed group and the correction's Top-k (value and position) of the predicted group.
    mp2 = get("lenet5", 10, push="front+head").layout  # MP²'s default pushed group: the measured one
    expected_up = {"mp2": 4 * mp2.pushed + 8 * correction_entries(mp2, CORRECTION_RATIO), "powersgd": 4 * (p + dense + q)}
    for method, r in rows.items():
        up, down = r["bytes_up_per_worker_step"], r["bytes_down_per_worker_step"]
        assert up["min"] == up["max"] == up["median"] == expected_up[method], (method, up)
        assert down["min"] == down["max"] == down["median"], (method, down)  # the same reply every step
    assert rows["mp2"]["bytes_down_per_worker_step"]["median"] == 4 * layout.total + CONTROL  # the whole model back
    assert rows["powersgd"]["bytes_down_per_worker_step"]["median"] == 4 * (p + dense) + CONTROL + 4 * q + CONTROL
    assert rows["powersgd"]["exchanges_per_step"] == {"step": 2}

    # The predictor's size beside MP² (an untrained one of the default structure); none for the others.
    expected_weights = sum(v.size for v in Predictor(layout, seed=0).numpy_weights().values())
    assert rows["mp2"]["predictor_weights"] == expected_weights > 0
    assert rows["powersgd"]["predictor_weights"] is None
    assert rows["mp2"]["method_options"]["predictor"] == "<untrained, written by ps_step>"  # no temporary path

    for method, r in rows.items():
        assert r["ps"]["steps"] == 2 and len(r["ps_step_seconds"]) == 2
        assert 0 < r["ps"]["min_ms"] <= r["ps"]["median_ms"] <= r["ps"]["p90_ms"] <= r["ps"]["max_ms"]
        assert r["ps"]["median_ms"] == pytest.approx(1000 * statistics.fmean(r["ps_step_seconds"]))  # of two
        assert r["worker"]["steps"] == WORKERS * 2  # every worker's every measured step
        # A worker waits at least as long as the PS works on its step (the PS starts once every payload is there).
        assert r["worker"]["max_ms"] >= r["ps"]["min_ms"]
        assert sum(s["steps"] for s in r["ps_by_phase"].values()) == 2
        # The traced step is the real PSGraph step: its queue ops are in it.
        assert {"QueueDequeueV2", "QueueEnqueueV2"} <= set(r["traced_step"]["ms_by_op_type"]), method
    assert list(rows["mp2"]["ps_by_phase"]) == ["partial"]  # a predictor file: every step predicts

    # The printed table: one row per method with the same figures.
    for method, r in rows.items():
        row = re.search(rf"^\| lenet5 \| 2 \| {method} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]*) \|$",
                        done.stdout, re.M)
        assert row, f"no {method} row in:\n{done.stdout}"
        median, p90, worker, up, down, weights = row.groups()
        assert float(median) == round(r["ps"]["median_ms"], 1) and float(p90) == round(r["ps"]["p90_ms"], 1)
        assert float(worker) == round(r["worker"]["median_ms"], 1)
        assert int(up.replace(",", "")) == expected_up[method]
        assert int(down.replace(",", "")) == r["bytes_down_per_worker_step"]["median"]
        assert weights.replace(",", "") == ("" if r["predictor_weights"] is None else str(r["predictor_weights"]))

    readme = (out / "README.md").read_text()
    assert saved["command"] in readme
    assert all(f"| lenet5 | 2 | {m} |" in readme for m in methods)


@pytest.mark.cluster
@pytest.mark.parametrize("flags, says", [
    (["--workers", "0"], "--workers: must be at least 1, got 0"),
    (["--methods", "nosuch"], "invalid choice: 'nosuch'"),
])
def test_a_bad_flag_is_one_line_before_anything_runs(tmp_path, flags, says):
    done = run(SCRIPT, *flags, "--out", str(tmp_path / "never"))
    assert done.returncode == 2
    assert says in done.stdout and "Traceback" not in done.stdout
    assert not (tmp_path / "never").exists()


@pytest.mark.unit
def test_every_method_has_payloads_of_its_wire_types():
    """What the benchmark's workers push fits each method's queues: one list per exchange, of its up_dtypes."""
    from benchmarks import ps_step
    from runtime.methods import METHODS

    assert set(ps_step.METHOD_NAMES) == set(METHODS)  # a new method needs its payloads here
    layout = LENET.layout
    for name in ps_step.METHOD_NAMES:
        _, _, method = ps_step.build_method("lenet5", name, WORKERS, 4, None)
        for phase in method.phase_names:
            exchanges = ps_step.payloads(method, phase, np.random.default_rng(0))
            assert len(exchanges) == (2 if name == "powersgd" else 1), name
            for arrays in exchanges:
                assert [a.dtype for a in arrays] == [d.as_numpy_dtype for d in method.up_dtypes], (name, phase)
    mp2 = ps_step.build_method("lenet5", "mp2", WORKERS, 4, None)[2]
    pushed = get("lenet5", 10, push="front+head").layout.pushed  # MP²'s measured pushed group, its default
    assert [len(ps_step.payloads(mp2, phase, np.random.default_rng(0))[0][0]) for phase in (0, 1, 2)] == [
        layout.total, pushed, pushed]  # full, partial, partial with weights

    # DGC: the biases dense, every other tensor its target count of distinct positions inside it.
    dgc = ps_step.build_method("lenet5", "dgc", WORKERS, 4, None)[2]
    values, positions, dense = ps_step.payloads(dgc, 0, np.random.default_rng(0))[0]
    biases = [p for p in layout.params if len(p.shape) == 1]
    assert len(dense) == sum(p.size for p in biases)
    offset, start = 0, 0
    for p in layout.params:
        if len(p.shape) > 1:
            count = max(1, math.ceil(0.001 * p.size))
            mine = positions[start:start + count]
            assert len(set(mine.tolist())) == count and offset <= mine.min() and mine.max() < offset + p.size, p.name
            start += count
        offset += p.size
    assert start == len(positions) == len(values)
