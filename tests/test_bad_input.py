"""Bad input and faults: paths from any directory, a dead worker, ports, npz files, bad flags and outputs, macro metrics."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import models
import paramset
from helpers import npzio
from runtime.cluster import Cluster, ClusterError, port_in_use, start_server
from runtime.metrics import classification_report
from tests.cluster import launcher_env, ROOT, SMALL

pytestmark = pytest.mark.cluster


def test_macro_averages_cover_classes_that_are_only_predicted():
    # labels hold classes 0 and 1; class 2 is predicted once but never occurs.
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 2, 1, 1])
    report = classification_report(labels, predictions, classes=4)
    # per class (0, 1, 2): precision 1, 1, 0; recall 1/2, 1, 0; F1 2/3, 1, 0. Class 3 appears nowhere.
    assert report["accuracy"] == pytest.approx(3 / 4)
    assert report["precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert report["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert report["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_macro_averages_of_a_class_never_predicted():
    labels = np.array([0, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1])
    report = classification_report(labels, predictions, classes=3)
    # precision 1, 1/3, 0; recall 1, 1, 0; F1 1, 1/2, 0
    assert report["precision"] == pytest.approx((1 + 1 / 3) / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(1.5 / 3)


def _time_wait_port() -> int:
    """A port whose only trace is a connection in TIME-WAIT: the accepting side closed first.

    The listener sets SO_REUSEADDR as gRPC's server does (Linux lets a bind pass a TIME-WAIT
    connection only when both sockets set it).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first, so its end (port `port`) goes to TIME-WAIT
    time.sleep(0.1)
    client.close()
    listener.close()
    return port


def test_a_port_in_time_wait_is_free_but_a_listening_one_is_not():
    port = _time_wait_port()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert "TIME-WAIT" in states, states  # the situation the probe must accept
    assert not port_in_use(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", port))
        listening.listen(1)
        assert port_in_use(port)
        with pytest.raises(ClusterError, match=f"port {port} .* already in use"):
            start_server(Cluster((f"127.0.0.1:{port}",), ("127.0.0.1:1",)), "ps", 0, 1)


# --- npzio: the one writer and reader --------------------------------------------------------------

def test_npz_round_trip_and_atomic_json_and_bytes(tmp_path):
    npzio.write(tmp_path / "a.npz", {"x": np.arange(3, dtype=np.float32)}, {"epoch": np.int64(2)})
    arrays, meta = npzio.read(tmp_path / "a.npz")
    np.testing.assert_array_equal(arrays["x"], [0, 1, 2])
    assert meta == {"epoch": 2}
    npzio.write_json(tmp_path / "b.json", {"z": 1, "a": np.float32(0.5)})
    assert (tmp_path / "b.json").read_text() == '{\n "a": 0.5,\n "z": 1\n}\n'
    npzio.write_bytes(tmp_path / "b.json", b"replaced")
    assert (tmp_path / "b.json").read_bytes() == b"replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.json"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    npzio.write_json(tmp_path / "s.json", {"old": True})
    with pytest.raises(TypeError):
        npzio.write_json(tmp_path / "s.json", {"new": object()})
    assert json.loads((tmp_path / "s.json").read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_npz_read_has_one_error_saying_what_is_wrong(tmp_path):
    npzio.write(tmp_path / "good.npz", {"x": np.ones(1000)}, {"k": 1})
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_bytes(b"not an archive\n" * 20)
    (tmp_path / "binary.npz").write_bytes(bytes(range(200)))
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    np.save(tmp_path / "array.npy", np.ones(3))
    np.savez(tmp_path / "badmeta.npz", **{npzio.META_KEY: np.ones(3)})
    expected = {
        "missing.npz": "does not exist",
        "truncated.npz": "damaged or truncated",
        # numpy takes a file that is neither .npz nor .npy for a pickle and advises loading it unsafely
        "text.npz": "is not an .npz file (its first bytes look like text: 'not an archive\\nnot an",
        "binary.npz": "is not an .npz file (it starts with b'\\x00\\x01",
        "empty.npz": "is empty (0 bytes), not an .npz file",
        "pickled.npz": "pickled object arrays",
        "array.npy": "single .npy array",
        "badmeta.npz": "not JSON text",
    }
    for name, problem in expected.items():
        with pytest.raises(npzio.NpzError) as e:
            npzio.read(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name)) and problem in str(e.value), str(e.value)
        assert "allow_pickle" not in str(e.value)


def test_a_text_file_given_as_the_ps_predictor_is_not_an_npz(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a text file, not a predictor\n")
    done = _launch("mp2_ps.py", "--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--method", "mp2",
                   "--predictor", str(notes), "--out", str(tmp_path / "run"), *SMALL, timeout=120)
    assert done.returncode == 1, done.stdout[-2000:]
    assert f"ps: error: {notes} is not an .npz file (its first bytes look like text" in done.stdout, done.stdout[-2000:]
    assert "pickle" not in done.stdout and "Traceback" not in done.stdout


def test_readers_built_on_npzio_keep_their_own_error_type(tmp_path):
    from predictor import CheckpointError, read_meta
    from predictor.stage.state import LAST, ResumeError, load_state

    np.savez(tmp_path / LAST, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ResumeError, match="pickled object arrays"):
        load_state(tmp_path, {})
    with pytest.raises(CheckpointError, match="pickled object arrays"):
        read_meta(str(tmp_path / LAST))
    layout = models.get("lenet5", 10).layout
    writer = paramset.ParamSetWriter(tmp_path / "snaps", layout, "synthetic", shard_size=1)
    writer.add(np.zeros(layout.total, np.float32), step=1)
    shard = tmp_path / "snaps" / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(paramset.ParamSetError, match="shard-00000.npz is damaged or truncated"):
        paramset.read([tmp_path / "snaps"], layout)
    shard.unlink()
    with pytest.raises(paramset.ParamSetError, match="listed in the manifest but missing"):
        paramset.read([tmp_path / "snaps"], layout)


# --- the local launcher: paths, a dead worker, unwritable output ---------------------------------

def _launch(script: str, *args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=launcher_env(), text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_a_killed_worker_is_named_by_the_ps_and_the_launcher_exits_128_plus_9(tmp_path):
    launcher = subprocess.Popen(
        [sys.executable, str(ROOT / "mp2_local.py"), "--workers", "2", "--epochs", "50", "--out", str(tmp_path),
         *SMALL, "--step-timeout", "16"],  # longer than the 15 s the launcher used to allow the PS
        cwd=ROOT, env=launcher_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    lines = []
    try:
        pids = {}
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith("[launcher] pids: "):
                pids = dict(item.split() for item in line.split(": ", 1)[1].split(", "))
            if line.startswith("[ps] ps: epoch 1/50"):
                break
        assert pids and launcher.poll() is None, "".join(lines)
        os.kill(int(pids["w1"]), signal.SIGKILL)
        lines += launcher.stdout.readlines()
        code = launcher.wait(timeout=120)
    finally:
        launcher.kill()
        launcher.wait()
    output = "".join(lines)
    assert "[launcher] w1 was killed by SIGKILL (exit 137)" in output, output[-3000:]
    assert re.search(r"\[ps\] ps: error: worker 1 sent (nothing|no report) for 16 s", output), output[-3000:]
    assert code == 128 + signal.SIGKILL, output[-3000:]


@pytest.mark.parametrize("script", ["mp2_local.py", "mp2_pipeline.py"])
def test_an_out_that_cannot_be_created_is_one_line(tmp_path, script):
    (tmp_path / "file").write_text("a file, not a directory")
    for out, reason in ((tmp_path / "file" / "run", "Not a directory"), (Path("/proc/x"), "No such file")):
        done = _launch(script, "--workers", "1", "--epochs", "1", "--out", str(out), *SMALL[:4], timeout=60)
        assert done.returncode == 1, done.stdout
        [line] = done.stdout.strip().splitlines()
        assert line.startswith(f"{script[:-3]}: error: cannot create --out {out} ({reason}"), line
        assert line.endswith("choose a directory you can write"), line


def test_a_full_disk_stops_the_run_with_one_line(tmp_path):
    # The kernel's own full disk: writes to /dev/full fail with ENOSPC.
    (tmp_path / "w0.log").symlink_to("/dev/full")
    done = _launch("mp2_local.py", "--workers", "1", "--epochs", "1", "--out", str(tmp_path), *SMALL, timeout=120)
    assert done.returncode == 1, done.stdout[-3000:]
    # The dated header of each log is written before any process starts: nothing runs on a full disk.
    assert done.stdout.strip().splitlines()[-1] == (
        f"mp2_local: error: cannot write the logs in {tmp_path} (No space left on device); choose another --out")
    assert "[launcher] pids" not in done.stdout
    assert "Traceback" not in done.stdout


# --- the pipeline: a stale predictor, a directory it did not make ---------------------------------

@pytest.mark.parametrize("trained_epochs", [None, 0])
def test_pipeline_refuses_a_predictor_that_was_never_trained(tmp_path, trained_epochs):
    from predictor import Predictor, save_checkpoint

    layout = models.get("lenet5", 10, push="front+head").layout  # MP²'s measured pushed group, the pipeline's default
    path = tmp_path / "predictors" / "lenet5-synthetic-push-front_head" / "predictor.npz"
    path.parent.mkdir(parents=True)
    meta = {"dataset": "synthetic"} if trained_epochs is None else {"dataset": "synthetic", "trained_epochs": trained_epochs}
    save_checkpoint(str(path), layout, Predictor(layout, seed=0).numpy_weights(), meta)
    # Run from tmp_path: the default predictors/MODEL-DATASET/predictor.npz is the caller's.
    done = _launch("mp2_pipeline.py", "--workers", "1", "--epochs", "1", "--dataset", "synthetic", "--out", "pipe",
                   cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout[-3000:]
    assert done.stdout.strip().splitlines()[-1] == (
        f"mp2_pipeline: error: predictor at {path} was never trained (an interrupted retraining?): run with --retrain")
    assert not (tmp_path / "pipe" / "baseline").exists()  # refused before any stage ran


def test_pipeline_never_deletes_a_directory_it_did_not_make(tmp_path):
    mine = tmp_path / "pipe" / "baseline"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("the user's own file")
    done = _launch("mp2_pipeline.py", "--workers", "1", "--epochs", "1", "--dataset", "synthetic", "--out", "pipe",
                   cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout[-3000:]
    assert f"mp2_pipeline: error: {mine} exists and is not a run directory of this pipeline" in done.stdout
    assert (mine / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize("script, flag", [
    ("mp2_local.py", "--workers"), ("mp2_pipeline.py", "--workers"), ("mp2_pipeline.py", "--epochs"),
    ("mp2_pipeline.py", "--snapshot-every"), ("mp2_pipeline.py", "--stage-epochs"),
])
def test_counts_out_of_range_are_refused_by_argparse(tmp_path, script, flag):
    done = _launch(script, flag, "0", "--out", str(tmp_path / "never"), timeout=60)
    assert done.returncode == 2 and f"argument {flag}: must be at least 1, got 0" in done.stdout, done.stdout
    assert not (tmp_path / "never").exists()
