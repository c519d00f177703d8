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
from predictor import Predictor, save_checkpoint
from tests.cluster import SMALL, cluster_flags, read_jsonl, run, start

LENET = models.get("lenet5", 10)
STEPS_PER_EPOCH = data.Schedule(2000, 2, 50, 0).steps_per_epoch  # synthetic's default 2000 images


@pytest.fixture(scope="module")
def untrained_predictor(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("predictor") / "lenet5-untrained.npz"
    save_checkpoint(str(path), LENET.layout, Predictor(LENET.layout, seed=0).numpy_weights(), {"note": "untrained"})
    return str(path)


def _check_run(out, method: str, up_values: int, down_values: int) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    metrics = read_jsonl(out / "metrics.jsonl")
    assert summary["method"] == method
    assert sorted((r["worker"], r["epoch"]) for r in metrics) == [(w, e) for w in (0, 1) for e in (1, 2)]
    for r in metrics:
        # Bytes come from the tensors actually sent: float32 values, every step.
        assert r["bytes_pushed"] == 4 * up_values * STEPS_PER_EPOCH
        assert r["bytes_pulled"] == 4 * down_values * STEPS_PER_EPOCH
        for key in ("loss", "train_acc", "test_acc", "precision", "recall", "f1", "comm_seconds", "step_seconds"):
            assert np.isfinite(r[key])
    assert summary["bytes_pushed_total"] == 4 * up_values * STEPS_PER_EPOCH * 2 * 2
    assert summary["bytes_pulled_total"] == 4 * down_values * STEPS_PER_EPOCH * 2 * 2
    return summary


def test_baseline_two_workers_learns_and_counts_bytes(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "baseline", "--epochs", "2", "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stdout
    summary = _check_run(out, "baseline", LENET.layout.total, LENET.layout.total)
    first, last = summary["test_acc_by_epoch"]
    assert last > 0.5 and last >= first, summary  # 10 classes: chance is 0.1
    assert (out / "checkpoint.npz").exists() and (out / "best.npz").exists()


def test_mp2_two_workers_pushes_only_the_front_layers(tmp_path, untrained_predictor):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--predictor", untrained_predictor,
               "--epochs", "2", "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stdout
    summary = _check_run(out, "mp2", LENET.layout.pushed, LENET.layout.total)
    assert summary["ps_predict_seconds"] > 0


def test_mp2_without_predictor_is_refused(tmp_path):
    done = run("mp2_ps.py", *cluster_flags(1), "--method", "mp2", "--out", str(tmp_path), *SMALL, timeout=120)
    assert done.returncode != 0
    assert "--predictor" in done.stdout


def test_predictor_for_another_model_is_refused(tmp_path):
    alexnet = models.get("alexnet", 10)
    path = tmp_path / "alexnet.npz"
    save_checkpoint(str(path), alexnet.layout, Predictor(alexnet.layout, seed=0).numpy_weights())
    done = run("mp2_ps.py", *cluster_flags(1), "--method", "mp2", "--predictor", str(path), "--out", str(tmp_path), *SMALL, timeout=120)
    assert done.returncode != 0
    assert "alexnet" in done.stdout and "lenet5" in done.stdout, done.stdout


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
    common = [*flags, "--epochs", "50", "--out", str(tmp_path), *SMALL[:-4], "--step-timeout", "10", "--connect-timeout", "60"]
    ps = start("mp2_ps.py", *common)
    w0 = start("mp2_worker.py", *common, "--task_index", "0")
    w1 = start("mp2_worker.py", *common, "--task_index", "1")
    try:
        _wait_for(tmp_path / "metrics.jsonl", timeout=120)  # an epoch went by: the run is under way
        w1.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        ps_out, _ = ps.communicate(timeout=60)
        w0_out, _ = w0.communicate(timeout=60)
        assert time.monotonic() - killed_at < 10 + 20  # the step timeout, plus start-up slack
        assert ps.returncode != 0 and "worker 1" in ps_out, ps_out
        assert w0.returncode != 0 and "worker 1" in w0_out, w0_out
    finally:
        for p in (ps, w0, w1):
            p.kill()
            p.wait()


def test_resume_continues_from_the_last_saved_epoch(tmp_path):
    out = tmp_path / "run"
    first = run("mp2_local.py", "--workers", "2", "--epochs", "1", "--out", str(out), *SMALL)
    assert first.returncode == 0, first.stdout
    saved = json.loads((out / "summary.json").read_text())
    again = run("mp2_local.py", "--workers", "2", "--epochs", "2", "--resume", "--out", str(out), *SMALL)
    assert again.returncode == 0, again.stdout
    assert "resuming after epoch 1" in again.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_epoch"] == 1
    assert summary["test_acc_by_epoch"][0] == saved["test_acc_by_epoch"][0]  # epoch 1 kept, not rerun
    metrics = read_jsonl(out / "metrics.jsonl")
    assert sorted((r["worker"], r["epoch"]) for r in metrics) == [(w, e) for w in (0, 1) for e in (1, 2)]


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
    common = [*flags, "--epochs", "50", "--out", str(tmp_path), *SMALL]
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
    launcher = start("mp2_local.py", "--workers", "2", "--epochs", "50", "--out", str(tmp_path), *SMALL)
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
