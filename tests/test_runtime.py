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
from tests.cluster import (SMALL, check_resumed, cluster_flags, correction_entries, read_jsonl, run, run_in_one,
                           run_together, start, take_ports, topk_entries)

pytestmark = pytest.mark.cluster

LENET = models.get("lenet5", 10)
STEPS_PER_EPOCH = data.Schedule(2000, 2, 50, 0).steps_per_epoch  # synthetic's default 2000 images


def _steps_per_epoch(workers: int) -> int:
    return data.Schedule(2000, workers, 50, 0).steps_per_epoch


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
            assert w["steps_verified_in_sync"] == _steps_per_epoch(workers)  # --verify-sync checked every step
        for key in ("loss", "train_acc", "test_acc", "precision", "recall", "f1", "comm_seconds", "step_seconds"):
            assert np.isfinite(r[key])
    assert summary["bytes_pushed_total"] == sum(r["bytes_pushed"] for r in records)
    assert summary["bytes_pulled_total"] == sum(r["bytes_pulled"] for r in records)
    return summary


CONTROL = 16  # bytes of the control word that ends every reply
SYNC = ["--verify-sync"]


def test_baseline_learns_counts_bytes_and_keeps_the_best_validation_epoch_with_three_workers(tmp_path):
    """One run serves both: the baseline's records and bytes, and best.npz following the best validation epoch."""
    out = tmp_path / "run"
    workers, epochs = 3, 3
    done = run("mp2_local.py", "--workers", str(workers), "--method", "baseline", "--epochs", str(epochs),
               "--out", str(out), *SMALL, *SYNC)
    assert done.returncode == 0, done.stdout
    summary = _check_records(out, epochs=epochs, workers=workers)
    steps = epochs * _steps_per_epoch(workers) * workers  # epochs x steps x workers
    assert summary["bytes_pushed_total"] == 4 * LENET.layout.total * steps
    assert summary["bytes_pulled_total"] == (4 * LENET.layout.total + CONTROL) * steps
    first, last = summary["test_acc_by_epoch"][0], summary["test_acc_by_epoch"][-1]
    assert last > 0.5 and last >= first, summary  # 10 classes: chance is 0.1
    assert (out / "checkpoint.npz").exists() and (out / "best.npz").exists()
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard events"

    curve = summary["val_acc_by_epoch"]
    best_meta = json.loads(np.load(out / "best.npz")["__meta__"].tobytes())
    assert best_meta["epoch"] == 1 + int(np.argmax(curve)) == summary["best_val_epoch"]  # the first of the highest
    assert summary["test_acc_at_best_val"] == summary["test_acc_by_epoch"][best_meta["epoch"] - 1]
    assert summary["final_test_acc"] == summary["test_acc_by_epoch"][-1]


def test_mp2_pushes_the_pushed_group_and_replies_with_the_prediction_of_the_average(tmp_path, untrained_predictor):
    """Checked on the wire itself: what each worker trained and sent, and what came back — the prediction
    from the average of the pushed groups, plus the correction: Adam's steps (helpers/optim.py's update, redone
    here in numpy) on the mean of the workers' Top-k of their gradient of the predicted group.

    The predictor is given as the stage's directory (its predictor.npz inside)."""
    stage_dir = tmp_path / "stage-out"
    stage_dir.mkdir()
    (stage_dir / "predictor.npz").write_bytes(Path(untrained_predictor).read_bytes())
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--predictor", str(stage_dir),
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


def test_workers_with_another_predictor_file_or_another_model_are_refused_and_the_ps_waits_on(tmp_path, untrained_predictor):
    """One PS, two workers in turn, each refused at the handshake with the difference named; the PS keeps waiting
    for a worker with the right flags."""
    other = tmp_path / "other.npz"
    save_checkpoint(str(other), LENET.layout, Predictor(LENET.layout, seed=1).numpy_weights())
    flags = cluster_flags(1)
    common = ["--method", "mp2", "--broadcast", "subset", "--epochs", "1", "--out", str(tmp_path), *SMALL]
    ps = start("mp2_ps.py", *flags, *common, "--predictor", untrained_predictor)
    try:
        worker = run("mp2_worker.py", *flags, "--task_index", "0", *common, "--predictor", str(other), timeout=180)
        assert worker.returncode != 0 and "the PS refused this worker" in worker.stdout, worker.stdout
        assert f"its --predictor {other}" in worker.stdout and "give it the same file, or none" in worker.stdout
        assert "Traceback" not in worker.stdout
        assert ps.poll() is None
        alexnet = run("mp2_worker.py", *flags, "--task_index", "0", *common, "--model", "alexnet", timeout=180)
        assert alexnet.returncode != 0
        assert "refused" in alexnet.stdout and "--model" in alexnet.stdout and "lenet5" in alexnet.stdout, alexnet.stdout
        assert ps.poll() is None  # the PS keeps waiting for a worker with the right flags
    finally:
        ps.kill()
        ps.wait()


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


def _dgc_sends_biases_dense_and_the_rest_sparse(out) -> None:
    """DGC's payload, checked on its uninterrupted run in test_dgc_resumed_..._and_sends_biases_dense_and_the_rest_sparse."""
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


def test_the_ps_refuses_bad_settings_before_any_cluster_forms(tmp_path):
    """Each a one-line refusal of the PS, all in one process (tests/cluster.py's run_in_one): a method option given
    to another method, MP² options that cannot go together, a predictor of another model, a directory without
    predictor.npz (a stage's directory with one is the predictor: test_mp2_pushes_...), a port in use (last: it
    gets as far as starting the server)."""
    alexnet = models.get("alexnet", 10)
    path = tmp_path / "alexnet.npz"
    save_checkpoint(str(path), alexnet.layout, Predictor(alexnet.layout, seed=0).numpy_weights())
    empty = tmp_path / "no-predictor"
    empty.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = {
            "ratio": [*cluster_flags(1), "--method", "baseline", "--ratio", "0.1"],
            "hold-subset": [*cluster_flags(1), "--method", "mp2", "--prediction", "hold", "--broadcast", "subset"],
            "other-model": [*cluster_flags(1), "--method", "mp2", "--predictor", str(path)],
            "empty-dir": [*cluster_flags(1), "--method", "mp2", "--predictor", str(empty)],
            "port": ["--ps_hosts", f"127.0.0.1:{port}", "--worker_hosts", "127.0.0.1:1"],
        }
        done = dict(zip(cases, run_in_one("mp2_ps.py", *[[*flags, "--out", str(tmp_path / name), *SMALL]
                                                        for name, flags in cases.items()])))
    for name, d in done.items():
        assert d.returncode != 0 and "Traceback" not in d.stdout, (name, d.stdout[-3000:])
    assert "--ratio is an option of topk, dgc, not of --method baseline" in done["ratio"].stdout, done["ratio"].stdout
    assert "--broadcast subset needs a predictor" in done["hold-subset"].stdout, done["hold-subset"].stdout
    assert "alexnet" in done["other-model"].stdout and "lenet5" in done["other-model"].stdout, done["other-model"].stdout
    assert "without predictor.npz" in done["empty-dir"].stdout, done["empty-dir"].stdout
    assert f"port {port}" in done["port"].stdout and "in use" in done["port"].stdout, done["port"].stdout


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


def full_steps(steps: int, switch: int, every: int = 10, window: int = 2) -> int:
    """Steps of online MP²'s schedule (or its control's) that push the whole model: all before `switch`, then
    the refresh windows (`window` steps of every `every`)."""
    return sum(1 for s in range(steps) if s < switch or s % every < window)


def pushed_bytes(full: int, partial: int, workers: int = 2) -> int:
    """Full steps push the model; partial ones the pushed group and the correction's Top-k (the default)."""
    sparse = correction_entries(LENET.layout, MP2Options().for_run(STEPS_PER_EPOCH).correction_ratio)
    return workers * (4 * LENET.layout.total * full + (4 * LENET.layout.pushed + 8 * sparse) * partial)


# DGC's state holds Top-k's (a residual) and more (momentum, sample draws); baseline's is the workers'
# optimizer and mixup draws, which every method has. Local SGD's and PowerSGD's resume: tests/test_exchanges.py.
def test_dgc_resumed_gives_what_the_uninterrupted_run_gives_and_sends_biases_dense_and_the_rest_sparse(tmp_path):
    """Same seed: 2 epochs in one go, or 1 and then --resume to 2, end in the same model, bit for bit; the
    resume crosses the end of DGC's warm-up (--warmup-epochs 1).

    A PS that ignored its checkpoint, workers that restarted their optimizer, DGC's residuals and
    momentum, DGC samples drawn afresh, or mixup draws that restarted from the seed would each make the
    models differ. The uninterrupted run (traced) also shows what DGC sends (_dgc_sends_biases_dense_and_the_rest_sparse).
    """
    flags = ["--workers", "2", "--method", "dgc", "--warmup-epochs", "1", "--mixup", "1", *SMALL, *SYNC]
    whole, split = tmp_path / "whole", tmp_path / "split"
    done = run_together(("mp2_local.py", *flags, "--epochs", "2", "--trace-steps", "2", "--out", str(whole)),
                        ("mp2_local.py", *flags, "--epochs", "1", "--out", str(split)))
    assert all(d.returncode == 0 for d in done), "".join(d.stdout[-2000:] for d in done)
    saved = _summary(split)
    again = run("mp2_local.py", *flags, "--epochs", "2", "--resume", "--out", str(split))
    check_resumed(whole, split, saved, again)
    _dgc_sends_biases_dense_and_the_rest_sparse(whole)


def test_an_online_mp2_run_resumed_ends_where_the_uninterrupted_one_ends(tmp_path):
    """Online MP² with --online-wait (and the correction, the default): 2 epochs in one go, or 1 and then
    --resume to 2, end in the same model bit for bit, with the same rounds, decisions, phases and bytes. A
    resume that restarted the warm-up, lost the live predictor, the trainee's state, the snapshots' pushed
    groups, a round in flight, the PS's correction (and its Adam state) or the workers' Top-k residuals
    would change the phases, the bytes or the model.

    Beside it, the control on the same schedule (--prediction hold --control-switch-step N, N the MP²
    run's switch step) pushes the whole model on exactly as many steps of each epoch, the same bytes: those of
    full steps until N and in the refresh windows, partial ones with the correction's Top-k elsewhere.

    The uninterrupted run (--verify-sync) is also the full broadcast's case of
    test_online_mp2_switches_records_the_switch_and_counts_every_byte."""
    schedule = ["--workers", "2", "--method", "mp2", "--refresh-every", "10", "--refresh-steps", "2", *SMALL]
    flags = [*schedule, *SYNC, "--online-wait", "--warmup-snapshots", "4",
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
    steps = 2 * STEPS_PER_EPOCH
    full, partial = c["phases"].get("full", 0), c["phases"].get("partial", 0)
    assert full + partial == steps and full == full_steps(steps, switch=switch[0] + 1) and partial > 0  # as MP² switching at N
    assert c["bytes_pushed_total"] == pushed_bytes(full, partial)
    assert c["method_stats"]["online"]["control_switch_step"] == switch[0]

    _check_online_switch(whole, done.stdout, "full", epochs=2, warmup_steps=8)  # 4 snapshots, one every 2 steps


def test_divergence_stops_the_run_naming_step_and_worker(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--epochs", "2", "--lr", "1e9", "--out", str(out), *SMALL)
    assert done.returncode != 0
    assert "training diverged at step" in done.stdout and "worker" in done.stdout and "lower --lr" in done.stdout, done.stdout[-3000:]
    assert "Traceback" not in done.stdout
    for line in (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []:
        json.loads(line)  # whatever was written is valid JSON


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


def test_resume_drops_the_snapshots_of_the_abandoned_stretch_and_a_finished_run_resumes_to_nothing_or_refuses(tmp_path):
    """A run killed after its checkpoint resumes without the snapshots taken after it. Then, that run finished:
    the PS resumed to fewer epochs refuses, to as many has nothing to do (and leaves the summary as it was),
    and in another configuration refuses (the three in one process: tests/cluster.py's run_in_one)."""
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

    before = (whole / "summary.json").read_text()
    ps = ["--snapshot-every", "2", "--resume", "--out", str(whole), *SMALL]
    fewer, same, other = run_in_one("mp2_ps.py", [*cluster_flags(1), *ps, "--epochs", "1"],
                                    [*cluster_flags(1), *ps, "--epochs", "2"],
                                    [*cluster_flags(1), *ps, "--epochs", "3", "--lr", "0.01"])
    assert fewer.returncode != 0 and "already done 2 epochs" in fewer.stdout, fewer.stdout
    assert same.returncode == 0 and "nothing to do" in same.stdout, same.stdout
    assert (whole / "summary.json").read_text() == before  # untouched, wall time included
    assert other.returncode != 0 and "another configuration" in other.stdout, other.stdout


def test_worker_facing_a_port_without_a_ps_gives_up_with_a_reason(tmp_path):
    """Something listens on the PS's port but never speaks gRPC (another program, a frozen PS): the worker
    names itself, the address and what listens there."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        address = f"127.0.0.1:{port}"
        flags = ["--ps_hosts", address, "--worker_hosts", f"127.0.0.1:{take_ports(1)[0]}"]
        started = time.monotonic()
        done = run("mp2_worker.py", *flags, "--task_index", "0", "--out", str(tmp_path), *SMALL[:-2],
                   "--connect-timeout", "5", timeout=150)
    assert done.returncode != 0
    assert "no answer within" in done.stdout and "Traceback" not in done.stdout, done.stdout[-2000:]
    assert time.monotonic() - started < 120
    line = [l for l in done.stdout.splitlines() if "no answer within" in l][0]
    assert line.startswith("worker 0: error:") and address in line and "does not answer as a TensorFlow server" in line


def test_online_mp2_switches_records_the_switch_and_counts_every_byte(tmp_path):
    """No predictor file: warm-up, a predictor trained beside the run, the switch, refresh windows.

    A tolerance of 1 makes every check pass, so the switch is certain; what is tested is the
    mechanism: the switch announced and recorded, every step's bytes counted by its phase, and
    (with --verify-sync) every worker's model equal to the PS's, subset broadcast included. Here with a
    subset broadcast; the full broadcast's case is the uninterrupted run of
    test_an_online_mp2_run_resumed_ends_where_the_uninterrupted_one_ends.
    """
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--broadcast", "subset", "--epochs", "2",
               "--warmup-snapshots", "6", "--online-snapshot-every", "2", "--refresh-every", "10", "--refresh-steps", "2",
               "--retrain-after", "100", "--switch-tolerance", "1", "--watch-tolerance", "1", "--online-wait",
               "--first-round-steps", "20", "--round-steps", "10",
               "--out", str(out), *SMALL, *SYNC, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    _check_online_switch(out, done.stdout, "subset", epochs=2, warmup_steps=12)  # 6 snapshots, one every 2 steps


def _check_online_switch(out, stdout: str, broadcast: str, epochs: int, warmup_steps: int) -> None:
    """Online MP²'s switch announced and recorded, every step counted by its phase and its bytes (with
    --verify-sync: every worker's model equal to the PS's)."""
    assert "workers switch to MP²" in stdout
    summary = _check_records(out, epochs=epochs)
    online = summary["method_stats"]["online"]
    assert online["rounds"] >= 1 and any(e["event"] == "switch to mp2" for e in online["events"])
    assert any(e["event"] == "switch to mp2" for r in _epochs(out) for e in r["events"])
    phases = summary["phases"]
    full, partial, with_weights = phases.get("full", 0), phases.get("partial", 0), phases.get("partial+weights", 0)
    assert full + partial + with_weights == epochs * STEPS_PER_EPOCH and partial + with_weights > 0 and full >= warmup_steps
    steps = summary["method_stats"]["steps"]  # what MP² did, by the PS's own count (and no warning)
    assert (steps["partial"], steps["full"]) == (partial + with_weights, full) and steps["full_by_reason"]["warm-up"] >= warmup_steps
    assert "never switched" not in stdout and f"{partial + with_weights} of {epochs * STEPS_PER_EPOCH} steps" in stdout
    layout, workers = LENET.layout, 2
    # A partial step sends the correction's Top-k too (by default with a full broadcast, never with subset).
    sparse = correction_entries(layout, summary["method_options"]["correction_ratio"]) if broadcast == "full" else 0
    assert (sparse > 0) == (broadcast == "full")
    assert summary["bytes_pushed_total"] == workers * ((4 * layout.total) * full
                                                       + (4 * layout.pushed + 8 * sparse) * (partial + with_weights))
    if broadcast == "full":
        assert with_weights == 0
        assert summary["bytes_pulled_total"] == workers * (4 * layout.total + CONTROL) * epochs * STEPS_PER_EPOCH
    else:
        # The predictor online MP² trains by default (its dense heads through a bottleneck): what is sent.
        online_predictor = Predictor(layout, seed=0, dense_rank=MP2Options().online_dense_rank)
        predictor_values = sum(v.size for v in online_predictor.numpy_weights().values())
        assert with_weights == online["rounds"] - sum(1 for e in online["events"] if e.get("passed") is False)
        assert summary["bytes_pulled_total"] == workers * (
            (4 * layout.total + CONTROL) * full + (4 * layout.pushed + CONTROL) * (partial + with_weights)
            + 4 * predictor_values * with_weights)
