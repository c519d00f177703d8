"""The distributed runtime, with a real PS and real workers as processes on 127.0.0.1."""
from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import data
import models
from predictor import Predictor, load_checkpoint, save_checkpoint
from runtime.methods.mp2_options import MP2Options
from tests.cluster import (SMALL, cluster_flags, correction_entries, read_jsonl, run, run_together, start, take_ports,
                           topk_entries)

pytestmark = pytest.mark.cluster

LENET = models.get("lenet5", 10)
STEPS_PER_EPOCH = data.Schedule(2000, 2, 50, 0).steps_per_epoch  # synthetic's default 2000 images


@pytest.fixture(scope="module")
def untrained_predictor(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("predictor") / "lenet5-untrained.npz"
    save_checkpoint(str(path), LENET.layout, Predictor(LENET.layout, seed=0).numpy_weights(), {"note": "untrained"})
    return str(path)


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def _epochs(out) -> list[dict]:
    return read_jsonl(out / "metrics.jsonl")


def _check_records(out, epochs: int = 2, workers: int = 2) -> dict:
    """The shared checks of a finished run: one record per epoch, every worker in it, all in sync."""
    summary = _summary(out)
    records = _epochs(out)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for r in records:
        assert sorted(w["worker"] for w in r["workers"]) == list(range(workers))
        for w in r["workers"]:
            assert w["steps_verified_in_sync"] == STEPS_PER_EPOCH  # --verify-sync checked every step
        for key in ("loss", "train_acc", "test_acc", "precision", "recall", "f1", "comm_seconds", "step_seconds"):
            assert np.isfinite(r[key])
    assert summary["bytes_pushed_total"] == sum(r["bytes_pushed"] for r in records)
    assert summary["bytes_pulled_total"] == sum(r["bytes_pulled"] for r in records)
    return summary


CONTROL = 16  # bytes of the control word that ends every reply
SYNC = ["--verify-sync"]


def test_baseline_two_workers_learns_and_counts_bytes(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "baseline", "--epochs", "2", "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out)
    steps = 2 * STEPS_PER_EPOCH * 2  # epochs x steps x workers
    assert summary["bytes_pushed_total"] == 4 * LENET.layout.total * steps
    assert summary["bytes_pulled_total"] == (4 * LENET.layout.total + CONTROL) * steps
    first, last = summary["test_acc_by_epoch"]
    assert last > 0.5 and last >= first, summary  # 10 classes: chance is 0.1
    assert (out / "checkpoint.npz").exists() and (out / "best.npz").exists()
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard events"


def test_mp2_pushes_the_pushed_group_and_replies_with_the_prediction_of_the_average(tmp_path, untrained_predictor):
    """Checked on the wire itself: what each worker trained and sent, and what came back — the prediction
    from the average of the pushed groups, plus the correction: Adam's steps (optim.py's update, redone
    here in numpy) on the mean of the workers' Top-k of their gradient of the predicted group."""
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--predictor", untrained_predictor,
               "--epochs", "2", "--full-push-epochs", "1", "--trace-steps", "4", "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out)
    layout = LENET.layout
    workers, ratio = 2, summary["method_options"]["correction_ratio"]
    sparse = correction_entries(layout, ratio)
    assert ratio > 0 and 0 < sparse < layout.predicted // 100
    # Epoch 1 pushes the pushed group and the correction's entries, epoch 2 (the full-push finish)
    # everything; replies are whole models.
    assert summary["bytes_pushed_total"] == (4 * layout.pushed + 8 * sparse + 4 * layout.total) * STEPS_PER_EPOCH * workers
    assert summary["bytes_pulled_total"] == (4 * layout.total + CONTROL) * 2 * STEPS_PER_EPOCH * workers
    assert summary["phases"] == {"partial": STEPS_PER_EPOCH, "full": STEPS_PER_EPOCH}
    traces = [np.load(out / f"trace-worker-{i}.npz") for i in (0, 1)]
    predictor = Predictor(layout, weights=load_checkpoint(untrained_predictor, layout)[0])
    correction, m, v = (np.zeros(layout.predicted) for _ in range(3))
    for s in range(4):
        ups = [t[f"{s}/up/0"] for t in traces]
        assert all(u.shape == (layout.pushed,) for u in ups)
        assert not np.allclose(ups[0], ups[1])  # the workers' data differ, so must their pushes
        if s > 0:
            before = traces[0][f"{s - 1}/reply/0"]  # the model every worker started step s from
            for t in traces:
                trained = t[f"{s}/trained"]
                # Workers train the pushed group only: the predicted group is what the PS sent.
                np.testing.assert_array_equal(layout.split(trained)[1], layout.split(before)[1])
                assert not np.allclose(layout.split(trained)[0], layout.split(before)[0])
        gradient = np.zeros(layout.predicted)
        for t in traces:
            values, positions = t[f"{s}/up/1"], t[f"{s}/up/2"]
            assert values.shape == positions.shape == (sparse,) and len(set(positions.tolist())) == sparse
            np.add.at(gradient, positions, values / workers)
        m, v = 0.9 * m + 0.1 * gradient, 0.999 * v + 0.001 * gradient ** 2
        correction -= summary["lr"] * np.sqrt(1 - 0.999 ** (s + 1)) / (1 - 0.9 ** (s + 1)) * m / (np.sqrt(v) + 1e-8)
        reply = traces[0][f"{s}/reply/0"]
        np.testing.assert_array_equal(reply, traces[1][f"{s}/reply/0"])
        average = (ups[0] + ups[1]) / 2  # both workers count, not just one
        predicted = layout.split(predictor(average).numpy())[1]
        np.testing.assert_allclose(layout.split(reply)[0], average, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(layout.split(reply)[1], predicted + correction, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(correction) > sparse  # the steps moved it (and more than one step's entries)


def test_subset_broadcast_workers_read_the_predictor_file_and_get_only_the_average(tmp_path, untrained_predictor):
    """The local launcher passes --predictor on: no weights on the wire, and workers still in sync."""
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--predictor", untrained_predictor,
               "--broadcast", "subset", "--epochs", "1", "--trace-steps", "2", "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    assert "reads the predictor" in done.stdout
    summary = _check_records(out, epochs=1)
    layout, workers = LENET.layout, 2
    assert summary["phases"] == {"partial": STEPS_PER_EPOCH}  # never partial+weights
    assert summary["method_stats"] == {"workers_reading_the_predictor_file": 2,
                                       "steps": {"full": 0, "full_by_reason": {}, "partial": STEPS_PER_EPOCH}}
    assert summary["bytes_pulled_total"] == (4 * layout.pushed + CONTROL) * STEPS_PER_EPOCH * workers
    traces = [np.load(out / f"trace-worker-{i}.npz") for i in (0, 1)]
    ups = [t["1/up/0"] for t in traces]
    np.testing.assert_allclose(traces[0]["1/reply/0"], (ups[0] + ups[1]) / 2, rtol=1e-6, atol=1e-7)


def test_worker_with_another_predictor_file_is_refused(tmp_path, untrained_predictor):
    other = tmp_path / "other.npz"
    save_checkpoint(str(other), LENET.layout, Predictor(LENET.layout, seed=1).numpy_weights())
    flags = cluster_flags(1)
    common = ["--method", "mp2", "--broadcast", "subset", "--epochs", "1", "--out", str(tmp_path), *SMALL]
    ps = start("mp2_ps.py", *flags, *common, "--predictor", untrained_predictor)
    try:
        worker = run("mp2_worker.py", *flags, "--task_index", "0", *common, "--predictor", str(other), timeout=180)
    finally:
        ps.kill()
        ps.wait()
    assert worker.returncode != 0 and "the PS refused this worker" in worker.stdout, worker.stdout
    assert f"its --predictor {other}" in worker.stdout and "give it the same file, or none" in worker.stdout
    assert "Traceback" not in worker.stdout


def test_a_predictor_file_on_a_worker_of_online_mp2_is_refused():
    from runtime.methods import RunInfo, build
    from runtime.flags import method_options, ps_parser

    args = ps_parser("").parse_args(["--method", "mp2", "--broadcast", "subset"])
    method = build("mp2", LENET.layout, method_options(args), RunInfo(2, 10, 1, 1e-3, 0))
    assert "online MP² trains its own" in method.admit_worker(0, {"predictor_sha256": "ab" * 32, "predictor": "p"})
    assert method.admit_worker(0, {}) == ""


def test_subset_broadcast_of_a_rank_r_predictor_needs_the_file_on_every_worker():
    from runtime.methods import RunInfo, build
    from runtime.flags import method_options, ps_parser

    layout = models.get("lenet5", 10, push="conv1").layout  # conv2 predicted: a conv head
    args = ps_parser("").parse_args(["--method", "mp2", "--broadcast", "subset", "--predictor", "p.npz"])
    method = build("mp2", layout, method_options(args), RunInfo(2, 10, 1, 1e-3, 0))
    method.path, method.sha256 = "p.npz", "cd" * 32
    method.weights = Predictor(layout, seed=0, head_rank=2).numpy_weights()
    assert "decoder heads of rank 2" in method.admit_worker(0, {})
    assert method.admit_worker(0, {"predictor_sha256": "cd" * 32, "predictor": "p.npz"}) == ""
    method.weights = Predictor(layout, seed=0).numpy_weights()
    assert method.admit_worker(1, {}) == ""
    online = ps_parser("").parse_args(["--method", "mp2", "--online-stage-flags", "--epochs 1 --head-rank=4"])
    with pytest.raises(ValueError, match="drop --head-rank"):
        build("mp2", layout, method_options(online), RunInfo(2, 10, 1, 1e-3, 0))._check_options()


def test_mp2_control_holds_the_predicted_group(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--prediction", "hold", "--push", "front+head",
               "--correction-ratio", "0", "--epochs", "2", "--full-push-epochs", "1", "--trace-steps", "3", "--out",
               str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out)
    layout = LENET.layout.with_push("front+head")
    assert summary["pushed_layers"] == ["conv1", "conv2", "fc3"]
    trace = np.load(out / "trace-worker-0.npz")
    start = trace["0/reply/0"]
    for s in (1, 2):
        np.testing.assert_array_equal(layout.split(trace[f"{s}/reply/0"])[1], layout.split(start)[1])
    assert summary["test_acc_by_epoch"][-1] > 0.3  # the full-push epoch trains everything



def test_topk_sends_k_entries_per_tensor_and_stays_in_sync(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "topk", "--ratio", "0.01", "--epochs", "2",
               "--trace-steps", "2", "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out)
    steps = 2 * STEPS_PER_EPOCH * 2
    assert summary["bytes_pushed_total"] == 8 * topk_entries(LENET.layout, 0.01) * steps  # float32 value + int32 index each
    assert summary["test_acc_by_epoch"][-1] > 0.2, summary
    trace = np.load(out / "trace-worker-0.npz")
    values, positions = trace["1/reply/0"], trace["1/reply/1"]
    # The reply is the sparse average: at most N·k entries, not the model.
    assert 0 < len(values) == len(positions) <= 2 * topk_entries(LENET.layout, 0.01)
    assert summary["bytes_pulled_total"] < steps * (8 * 2 * topk_entries(LENET.layout, 0.01) + CONTROL) + 1


def test_dgc_sends_biases_dense_and_the_rest_sparse(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "dgc", "--epochs", "2", "--warmup-epochs", "1",
               "--trace-steps", "2", "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out)
    trace = np.load(out / "trace-worker-0.npz")
    biases = sum(p.size for p in LENET.layout.params if len(p.shape) == 1)
    assert trace["0/up/2"].shape == (biases,)
    weights = LENET.layout.total - biases
    # Warm-up epoch 1 sends its warm-up share of each weight tensor (the threshold is estimated: 0.8-1.3x).
    from compression import warmup_ratio

    share = warmup_ratio(0, 0.001, 1)
    assert 0.01 < share < 0.1
    assert 0.8 * share * weights * 0.95 < len(trace["0/up/0"]) < 1.3 * share * weights * 1.05
    assert summary["test_acc_by_epoch"][-1] > 0.2, summary


def test_wnn_jumps_the_model(tmp_path):
    import wnn
    from wnn import network

    path = tmp_path / "wnn.npz"
    wnn.save(path, {kind: network.init(seed=1) for kind in network.KINDS},
             {"model": "lenet5", "spacing_steps": 2, "recording_steps": 2, "spacing": 1, "horizon": 5, "trained_epochs": 1})
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "wnn", "--wnn", str(path), "--epochs", "2",
               "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out)
    # Recording every 2 steps, a jump after every 5th recording: steps 10, 20, ... of 40.
    assert summary["phases"]["jump"] == (2 * STEPS_PER_EPOCH) // 10
    assert summary["bytes_pushed_total"] == 4 * LENET.layout.total * 2 * STEPS_PER_EPOCH * 2


def test_digest_tells_models_apart():
    import tensorflow as tf

    from runtime.wire import digest

    a = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    b = a.copy()
    b[500] = np.nextafter(b[500], np.float32(10))  # one ulp
    c = a.copy()
    c[[1, 2]] = c[[2, 1]]  # two values swapped
    got = [int(digest(tf.constant(v)).numpy()) for v in (a, b, c)]
    assert got[0] != got[1] and got[0] != got[2]
    assert int(digest(tf.constant(a)).numpy()) == got[0]


def test_method_options_are_checked(tmp_path):
    flags = cluster_flags(1)
    ps = start("mp2_ps.py", *flags, "--method", "topk", "--ratio", "0.01", "--epochs", "1", "--out", str(tmp_path), *SMALL)
    try:
        worker = run("mp2_worker.py", *flags, "--task_index", "0", "--method", "topk", "--ratio", "0.02",
                     "--epochs", "1", "--out", str(tmp_path), *SMALL, timeout=180)
        assert worker.returncode != 0
        # One phrase naming the option that differs.
        assert "refused this worker: --ratio: worker has 0.02, the PS has 0.01 — start it" in worker.stdout, worker.stdout
    finally:
        ps.kill()
        ps.wait()
    other = run("mp2_ps.py", *cluster_flags(1), "--method", "baseline", "--ratio", "0.1", "--out", str(tmp_path), *SMALL, timeout=120)
    assert other.returncode != 0 and "--ratio is an option of topk, dgc, not of --method baseline" in other.stdout, other.stdout
    assert "Traceback" not in other.stdout


def test_mp2_options_that_cannot_go_together_are_refused(tmp_path):
    done = run("mp2_ps.py", *cluster_flags(1), "--method", "mp2", "--prediction", "hold", "--broadcast", "subset",
               "--out", str(tmp_path), *SMALL, timeout=120)
    assert done.returncode != 0 and "--broadcast subset needs a predictor" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout


def test_predictor_for_another_model_is_refused(tmp_path):
    alexnet = models.get("alexnet", 10)
    path = tmp_path / "alexnet.npz"
    save_checkpoint(str(path), alexnet.layout, Predictor(alexnet.layout, seed=0).numpy_weights())
    done = run("mp2_ps.py", *cluster_flags(1), "--method", "mp2", "--predictor", str(path), "--out", str(tmp_path), *SMALL, timeout=120)
    assert done.returncode != 0
    assert "alexnet" in done.stdout and "lenet5" in done.stdout, done.stdout


def test_predictor_may_be_given_as_the_stage_directory(tmp_path, untrained_predictor):
    stage_dir = tmp_path / "stage-out"
    stage_dir.mkdir()
    (stage_dir / "predictor.npz").write_bytes(Path(untrained_predictor).read_bytes())
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "1", "--method", "mp2", "--predictor", str(stage_dir), "--epochs", "1",
               "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stdout
    empty = run("mp2_ps.py", *cluster_flags(1), "--method", "mp2", "--predictor", str(tmp_path), "--out", str(tmp_path), *SMALL, timeout=120)
    assert empty.returncode != 0 and "without predictor.npz" in empty.stdout, empty.stdout


def test_worker_with_other_model_is_refused_with_the_difference(tmp_path):
    flags = cluster_flags(1)
    ps = start("mp2_ps.py", *flags, "--epochs", "1", "--out", str(tmp_path), *SMALL)
    try:
        worker = run("mp2_worker.py", *flags, "--task_index", "0", "--epochs", "1", "--out", str(tmp_path),
                     *SMALL[:0], "--model", "alexnet", "--dataset", "synthetic", "--worker-batch", "50", timeout=180)
        assert worker.returncode != 0
        assert "refused" in worker.stdout and "--model" in worker.stdout and "lenet5" in worker.stdout, worker.stdout
        assert ps.poll() is None  # the PS keeps waiting for a worker with the right flags
    finally:
        ps.kill()
        ps.wait()


def test_killed_worker_stops_everyone_naming_it(tmp_path):
    flags = cluster_flags(2)
    common = [*flags, "--epochs", "2000", "--out", str(tmp_path), *SMALL[:-4], "--step-timeout", "6", "--connect-timeout", "60"]
    ps = start("mp2_ps.py", *common)
    w0 = start("mp2_worker.py", *common, "--task_index", "0")
    w1 = start("mp2_worker.py", *common, "--task_index", "1")
    try:
        _wait_for(tmp_path / "metrics.jsonl", timeout=120)  # an epoch went by: the run is under way
        w1.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        ps_out, _ = ps.communicate(timeout=60)
        w0_out, _ = w0.communicate(timeout=60)
        assert time.monotonic() - killed_at < 6 + 20  # the step timeout, plus start-up slack
        assert ps.returncode != 0 and "worker 1" in ps_out, ps_out
        assert w0.returncode != 0 and "worker 1" in w0_out, w0_out
    finally:
        for p in (ps, w0, w1):
            p.kill()
            p.wait()


# DGC's state holds Top-k's (a residual) and more (momentum, sample draws); baseline's is the workers'
# optimizer and mixup draws, which every method has. Local SGD's resume: tests/test_exchanges.py.
def test_resume_gives_what_the_uninterrupted_run_gives(tmp_path):
    """Same seed: 2 epochs in one go, or 1 and then --resume to 2, end in the same model, bit for bit
    (DGC and PowerSGD, the runs of both at once).

    A PS that ignored its checkpoint, workers that restarted their optimizer, DGC's residuals and
    momentum or PowerSGD's residuals and warm-started Q, DGC samples drawn afresh, or mixup draws that
    restarted from the seed would each make the models differ.
    """
    methods = ("dgc", "powersgd")
    flags = {m: ["--workers", "2", "--method", m, "--mixup", "1", *SMALL] for m in methods}
    whole, split = {m: tmp_path / m / "whole" for m in methods}, {m: tmp_path / m / "split" for m in methods}
    done = run_together(*[("mp2_local.py", *flags[m], "--epochs", "2", "--out", str(whole[m])) for m in methods],
                        *[("mp2_local.py", *flags[m], "--epochs", "1", "--out", str(split[m])) for m in methods])
    assert all(d.returncode == 0 for d in done), "".join(d.stdout[-2000:] for d in done)
    saved = {m: _summary(split[m]) for m in methods}
    again = dict(zip(methods, run_together(*[("mp2_local.py", *flags[m], "--epochs", "2", "--resume", "--out",
                                              str(split[m])) for m in methods])))
    for m in methods:
        assert again[m].returncode == 0, again[m].stdout
        assert "resuming after epoch 1" in again[m].stdout and "warning" not in again[m].stdout, again[m].stdout
        summary = _summary(split[m])
        assert summary["resumed_from_epoch"] == 1
        assert summary["test_acc_by_epoch"][0] == saved[m]["test_acc_by_epoch"][0]  # epoch 1 kept, not rerun
        assert [r["epoch"] for r in _epochs(split[m])] == [1, 2]
        np.testing.assert_array_equal(np.load(whole[m] / "checkpoint.npz")["model"],
                                      np.load(split[m] / "checkpoint.npz")["model"], err_msg=m)
        assert summary["test_acc_by_epoch"] == _summary(whole[m])["test_acc_by_epoch"], m
        for key in ("val_acc_by_epoch", "best_val_epoch", "test_acc_at_best_val"):  # the history kept, chosen alike
            assert summary[key] == _summary(whole[m])[key], (m, key)
        assert len(summary["val_acc_by_epoch"]) == 2 and None not in summary["val_acc_by_epoch"]
        worker_log = read_jsonl(split[m] / "worker-0.jsonl")
        assert [r["epoch"] for r in worker_log] == [1, 2]


def test_an_online_mp2_run_resumed_ends_where_the_uninterrupted_one_ends(tmp_path):
    """Online MP² with --online-wait (and the correction, the default): 2 epochs in one go, or 1 and then
    --resume to 2, end in the same model bit for bit, with the same rounds, decisions, phases and bytes. A
    resume that restarted the warm-up, lost the live predictor, the trainee's state, the snapshots' pushed
    groups, a round in flight, the PS's correction (and its Adam state) or the workers' Top-k residuals
    would change the phases, the bytes or the model.

    Beside it, the control on the same schedule (--prediction hold --control-switch-step N, N the MP²
    run's switch step) pushes the whole model on exactly as many steps of each epoch, the same bytes."""
    schedule = ["--workers", "2", "--method", "mp2", "--refresh-every", "10", "--refresh-steps", "2", *SMALL]
    flags = [*schedule, "--online-wait", "--warmup-snapshots", "4",
             "--online-snapshot-every", "2", "--retrain-after", "2", "--partial-snapshot-every", "3",
             "--first-round-steps", "20", "--round-steps", "10", "--switch-tolerance", "1", "--watch-tolerance", "1"]
    whole, split, control = tmp_path / "whole", tmp_path / "split", tmp_path / "control"
    done, first = run_together(("mp2_local.py", *flags, "--epochs", "2", "--out", str(whole)),
                               ("mp2_local.py", *flags, "--epochs", "1", "--out", str(split)))
    assert done.returncode == 0 and first.returncode == 0, done.stdout[-3000:] + first.stdout[-3000:]
    switch = [e["step"] for e in _summary(whole)["method_stats"]["online"]["events"] if e["event"] == "switch to mp2"]
    again, held = run_together(
        ("mp2_local.py", *flags, "--epochs", "2", "--resume", "--out", str(split)),
        ("mp2_local.py", *schedule, "--prediction", "hold", "--control-switch-step", str(switch[0]), "--epochs", "2",
         "--out", str(control)))
    assert again.returncode == 0 and "resuming after epoch 1" in again.stdout, again.stdout[-3000:]
    assert held.returncode == 0, held.stdout[-3000:]
    np.testing.assert_array_equal(np.load(whole / "checkpoint.npz")["model"], np.load(split / "checkpoint.npz")["model"])
    a, b = _summary(whole), _summary(split)
    online = a["method_stats"]["online"]
    assert online["rounds"] >= 3 and any(e["event"] == "switch to mp2" for e in online["events"])
    for key in ("test_acc_by_epoch", "phases", "bytes_pushed_total", "bytes_pulled_total"):
        assert a[key] == b[key], key
    assert a["method_stats"]["steps"] == b["method_stats"]["steps"]
    decisions = lambda s: [{k: v for k, v in e.items() if k != "seconds"} for e in s["method_stats"]["online"]["events"]]  # noqa: E731
    assert decisions(a) == decisions(b)
    assert online["rounds"] == b["method_stats"]["online"]["rounds"]
    assert a["method_options"]["correction_ratio"] > 0
    c = _summary(control)
    assert [r["phases"]["full"] for r in _epochs(control)] == [r["phases"]["full"] for r in _epochs(whole)]
    assert c["bytes_pushed_total"] == a["bytes_pushed_total"]
    assert c["method_stats"]["steps"]["full"] == a["method_stats"]["steps"]["full"] > 0


def test_resume_of_a_finished_run(tmp_path):
    out = tmp_path / "run"
    assert run("mp2_local.py", "--workers", "1", "--epochs", "2", "--out", str(out), *SMALL).returncode == 0
    before = (out / "summary.json").read_text()
    fewer = run("mp2_ps.py", *cluster_flags(1), "--resume", "--epochs", "1", "--out", str(out), *SMALL, timeout=120)
    assert fewer.returncode != 0 and "already done 2 epochs" in fewer.stdout, fewer.stdout
    same = run("mp2_ps.py", *cluster_flags(1), "--resume", "--epochs", "2", "--out", str(out), *SMALL, timeout=120)
    assert same.returncode == 0 and "nothing to do" in same.stdout, same.stdout
    assert (out / "summary.json").read_text() == before  # untouched, wall time included


def test_best_checkpoint_follows_the_best_validation_epoch_with_three_workers(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "3", "--epochs", "3", "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stdout
    summary = _summary(out)
    curve = summary["val_acc_by_epoch"]
    best_meta = json.loads(np.load(out / "best.npz")["__meta__"].tobytes())
    assert best_meta["epoch"] == 1 + int(np.argmax(curve)) == summary["best_val_epoch"]  # the first of the highest
    assert summary["test_acc_at_best_val"] == summary["test_acc_by_epoch"][best_meta["epoch"] - 1]
    assert summary["final_test_acc"] == summary["test_acc_by_epoch"][-1]


def test_divergence_stops_the_run_naming_step_and_worker(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--epochs", "2", "--lr", "1e9", "--out", str(out), *SMALL)
    assert done.returncode != 0
    assert "training diverged at step" in done.stdout and "worker" in done.stdout and "lower --lr" in done.stdout, done.stdout[-3000:]
    assert "Traceback" not in done.stdout
    for line in (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []:
        json.loads(line)  # whatever was written is valid JSON


def test_resume_refuses_another_configuration(tmp_path):
    out = tmp_path / "run"
    assert run("mp2_local.py", "--workers", "1", "--epochs", "1", "--out", str(out), *SMALL).returncode == 0
    again = run("mp2_ps.py", *cluster_flags(1), "--resume", "--lr", "0.01", "--epochs", "2", "--out", str(out), *SMALL, timeout=120)
    assert again.returncode != 0 and "another configuration" in again.stdout, again.stdout


def test_port_in_use_is_reported(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run("mp2_ps.py", "--ps_hosts", f"127.0.0.1:{port}", "--worker_hosts", "127.0.0.1:1", "--out", str(tmp_path), *SMALL, timeout=120)
    assert done.returncode != 0
    assert f"port {port}" in done.stdout and "in use" in done.stdout, done.stdout


def test_workers_that_never_come_are_named(tmp_path):
    done = run("mp2_ps.py", *cluster_flags(2), "--out", str(tmp_path), *SMALL[:-2], "--connect-timeout", "4", timeout=120)
    assert done.returncode != 0
    assert "worker(s) 0, 1 did not connect within 4 s" in done.stdout, done.stdout


def test_worker_without_ps_gives_up(tmp_path):
    done = run("mp2_worker.py", *cluster_flags(1), "--task_index", "0", "--out", str(tmp_path), *SMALL[:-2], "--connect-timeout", "3", timeout=120)
    assert done.returncode != 0
    assert "did not come up within 3 s" in done.stdout, done.stdout


def _wait_for(path, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.5)


def test_workers_stop_promptly_when_the_ps_dies(tmp_path):
    flags = cluster_flags(2)
    common = [*flags, "--epochs", "2000", "--out", str(tmp_path), *SMALL]
    ps = start("mp2_ps.py", *common)
    workers = [start("mp2_worker.py", *common, "--task_index", str(i)) for i in range(2)]
    try:
        _wait_for(tmp_path / "metrics.jsonl", timeout=120)
        ps.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        for w in workers:
            out, _ = w.communicate(timeout=60)  # a worker must not hang, not even at exit
            assert w.returncode != 0 and "PS" in out.splitlines()[-1], out[-2000:]
        assert time.monotonic() - killed_at < 30
    finally:
        for p in (ps, *workers):
            p.kill()
            p.wait()


def test_interrupting_the_launcher_stops_every_process(tmp_path):
    launcher = start("mp2_local.py", "--workers", "2", "--epochs", "2000", "--out", str(tmp_path), *SMALL)
    try:
        _wait_for(tmp_path / "metrics.jsonl", timeout=120)
        launcher.send_signal(signal.SIGINT)
        out, _ = launcher.communicate(timeout=60)
        assert launcher.returncode == 130, out[-2000:]
        assert "stopping every process" in out
    finally:
        launcher.kill()
        launcher.wait()
    time.sleep(1)
    assert _processes_mentioning(str(tmp_path)) == [], "processes left behind"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        if text in args:
            found.append(args)
    return found


def test_a_second_process_claiming_a_task_index_stops_everyone_with_the_reason(tmp_path):
    """Two processes claim task 0 from different addresses (as two hosts would).

    TensorFlow's gRPC runtime takes the newcomer for a restarted task 0 and aborts the first one's
    calls; nothing can keep that run going. What matters: no traceback, no hang past the step
    timeout, and the first worker says what happened.
    """
    ports = take_ports(3)
    ps_flags = ["--ps_hosts", f"127.0.0.1:{ports[0]}", "--worker_hosts", f"127.0.0.1:{ports[1]}"]
    other = ["--ps_hosts", f"127.0.0.1:{ports[0]}", "--worker_hosts", f"127.0.0.1:{ports[2]}"]
    common = ["--epochs", "2000", "--out", str(tmp_path), *SMALL[:-4], "--step-timeout", "15", "--connect-timeout", "60"]
    ps = start("mp2_ps.py", *ps_flags, *common)
    first = start("mp2_worker.py", *ps_flags, "--task_index", "0", *common)
    try:
        _wait_for(tmp_path / "metrics.jsonl", timeout=120)  # the first worker is training
        second = run("mp2_worker.py", *other, "--task_index", "0", *common, timeout=120)
        first_out, _ = first.communicate(timeout=60)
        ps_out, _ = ps.communicate(timeout=60)
        assert second.returncode != 0 and first.returncode != 0 and ps.returncode != 0
        assert "--task_index 0" in first_out, first_out[-2000:]
        assert "worker 0" in ps_out, ps_out[-2000:]
        for out in (first_out, second.stdout, ps_out):
            assert "Traceback" not in out, out[-3000:]
    finally:
        for p in (ps, first):
            p.kill()
            p.wait()


def test_resume_drops_the_snapshots_of_the_abandoned_stretch(tmp_path):
    flags = ["--workers", "1", "--snapshot-every", "2", *SMALL]
    whole, split = tmp_path / "whole", tmp_path / "split"
    done = run_together(("mp2_local.py", *flags, "--epochs", "2", "--out", str(whole)),
                        ("mp2_local.py", *flags, "--epochs", "1", "--out", str(split)))
    assert [d.returncode for d in done] == [0, 0], done[0].stdout + done[1].stdout
    manifest = lambda d: json.loads((d / "snapshots" / "manifest.json").read_text())  # noqa: E731
    uninterrupted = [r["step"] for r in manifest(whole)["snapshots"]]
    # As if killed in epoch 2 after its snapshots were written: the 2-epoch run's directory, with the
    # checkpoint (and worker state) of its epoch 1 — the 1-epoch run's, which are the same.
    for name in ("checkpoint.npz", "worker-0-state.npz"):
        (whole / name).write_bytes((split / name).read_bytes())
    again = run("mp2_local.py", *flags, "--epochs", "2", "--resume", "--out", str(whole))
    assert again.returncode == 0 and "dropped" in again.stdout, again.stdout
    one_worker_steps = data.Schedule(2000, 1, 50, 0).steps_per_epoch
    assert [r["step"] for r in manifest(whole)["snapshots"]] == uninterrupted
    assert len(uninterrupted) == 2 * one_worker_steps // 2


def test_worker_facing_a_port_without_a_ps_gives_up_with_a_reason(tmp_path):
    """Something listens on the PS's port but never speaks gRPC (another program, a frozen PS)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        flags = ["--ps_hosts", f"127.0.0.1:{port}", "--worker_hosts", f"127.0.0.1:{take_ports(1)[0]}"]
        started = time.monotonic()
        done = run("mp2_worker.py", *flags, "--task_index", "0", "--out", str(tmp_path), *SMALL[:-2],
                   "--connect-timeout", "5", timeout=150)
    assert done.returncode != 0
    assert "no answer within" in done.stdout and "Traceback" not in done.stdout, done.stdout[-2000:]
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("broadcast", ["full", "subset"])
def test_online_mp2_switches_records_the_switch_and_counts_every_byte(tmp_path, broadcast):
    """No predictor file: warm-up, a predictor trained beside the run, the switch, refresh windows.

    A tolerance of 1 makes every check pass, so the switch is certain; what is tested is the
    mechanism: the switch announced and recorded, every step's bytes counted by its phase, and
    (with --verify-sync) every worker's model equal to the PS's, subset broadcast included.
    """
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--broadcast", broadcast, "--epochs", "3",
               "--warmup-snapshots", "6", "--online-snapshot-every", "2", "--refresh-every", "10", "--refresh-steps", "2",
               "--retrain-after", "100", "--switch-tolerance", "1", "--watch-tolerance", "1", "--online-wait",
               "--first-round-steps", "20", "--round-steps", "10",
               "--out", str(out), *SMALL, *SYNC, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "workers switch to MP²" in done.stdout
    summary = _check_records(out, epochs=3)
    online = summary["method_stats"]["online"]
    assert online["rounds"] >= 1 and any(e["event"] == "switch to mp2" for e in online["events"])
    assert any(e["event"] == "switch to mp2" for r in _epochs(out) for e in r["events"])
    phases = summary["phases"]
    full, partial, with_weights = phases.get("full", 0), phases.get("partial", 0), phases.get("partial+weights", 0)
    assert full + partial + with_weights == 3 * STEPS_PER_EPOCH and partial + with_weights > 0 and full >= 12
    steps = summary["method_stats"]["steps"]  # what MP² did, by the PS's own count (and no warning)
    assert (steps["partial"], steps["full"]) == (partial + with_weights, full) and steps["full_by_reason"]["warm-up"] >= 12
    assert "never switched" not in done.stdout and f"{partial + with_weights} of {3 * STEPS_PER_EPOCH} steps" in done.stdout
    layout, workers = LENET.layout, 2
    # A partial step sends the correction's Top-k too (by default with a full broadcast, never with subset).
    sparse = correction_entries(layout, summary["method_options"]["correction_ratio"]) if broadcast == "full" else 0
    assert (sparse > 0) == (broadcast == "full")
    assert summary["bytes_pushed_total"] == workers * ((4 * layout.total) * full
                                                       + (4 * layout.pushed + 8 * sparse) * (partial + with_weights))
    if broadcast == "full":
        assert with_weights == 0
        assert summary["bytes_pulled_total"] == workers * (4 * layout.total + CONTROL) * 3 * STEPS_PER_EPOCH
    else:
        # The predictor online MP² trains by default (its dense heads through a bottleneck): what is sent.
        online_predictor = Predictor(layout, seed=0, dense_rank=MP2Options().online_dense_rank)
        predictor_values = sum(v.size for v in online_predictor.numpy_weights().values())
        assert with_weights == online["rounds"] - sum(1 for e in online["events"] if e.get("passed") is False)
        assert summary["bytes_pulled_total"] == workers * (
            (4 * layout.total + CONTROL) * full + (4 * layout.pushed + CONTROL) * (partial + with_weights)
            + 4 * predictor_values * with_weights)
