"""benchmarks/ps_step.py: a tiny real run (LeNet-5, 2 worker processes) prints and writes the PS's time per step."""
from __future__ import annotations

import json
import re
import statistics

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
def test_every_methods_epoch_has_exactly_the_exchanges_asked_for():
    """The benchmark's one epoch holds warm-up + measured + traced exchanging steps for every method, local steps
    between them (local SGD, SparseLoCo, Streaming DiLoCo) included, and the data gives exactly that epoch."""
    import data
    from benchmarks import ps_step
    from runtime.methods import METHODS

    assert ps_step.method_names() == tuple(METHODS)  # a new method is measured with no change here
    for name in ps_step.method_names():
        built = ps_step.setup("lenet5", name, WORKERS, 5, None)
        steps = built.steps_per_epoch
        exchanging = [s for s in range(steps) if not built.method.is_local(s)]
        assert len(exchanging) == 5 and exchanging[-1] == steps - 1, name
        if name == "localsgd":  # syncs at H-1, 2H-1, 3H-1, 4H-1 and the epoch's last step: the fewest is 4H + 1
            assert steps == 4 * built.method.opts.sync_every + 1
        assert data.Schedule(len(built.dataset.train_x), WORKERS, built.args.worker_batch, 0).steps_per_epoch == steps
        assert built.config.epochs == 1 and built.config.method == name


@pytest.mark.unit
def test_a_simulated_worker_builds_the_methods_exchange_without_training():
    """WorkerGraph(simulated=True), what the benchmark's workers run: no forward or backward pass (no convolution,
    no gradient op), and the method's own payload, of its wire types (the queues would refuse another), fed by
    the stand-in gradients."""
    import tensorflow as tf

    from benchmarks import ps_step
    from runtime.wire import Wire
    from runtime.worker import WorkerGraph

    for name in ps_step.method_names():
        built = ps_step.setup("lenet5", name, WORKERS, 2, None)
        method = built.method
        graph = tf.Graph()
        with graph.as_default():
            wire = Wire(WORKERS, method.up_dtypes, method.down_dtypes)
            worker = WorkerGraph(built.model, method, wire, 0, method.run.lr, simulated=True)
            kinds = {op.type for op in graph.get_operations()}
        assert not kinds & {"Conv2D", "Conv2DBackpropFilter", "MatMul"} - _method_kinds(name), (name, kinds)
        assert not any("gradients" in op.name for op in graph.get_operations()), name
        assert any(v.op.name.endswith("stand_in_gradient_0") for v in worker.side.scratches), name
        assert worker.push_ops and set(worker.push_ops) <= set(method.phase_names), name


def _method_kinds(name: str) -> set[str]:
    """Op kinds a method's own exchange uses (PowerSGD's and the correction's products are matrix products)."""
    return {"MatMul"} if name in ("powersgd", "mp2", "wnn") else set()
