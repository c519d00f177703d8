"""mp2_train_stage.py end to end: a tiny parameter dataset of a real LeNet-5 run, the script as a subprocess."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import data
import models
from paramset import ParamSetWriter
from predictor import load_checkpoint
from stage.adam import Adam

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
LENET = models.get("lenet5", 10)
# Small settings: 10 image batches of 50 per snapshot, 500 synthetic test images.
SMALL = ["--model", "lenet5", "--dataset", "synthetic", "--image-batches", "10", "--image-batch", "50"]


def train_stage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "mp2_train_stage.py", *args], cwd=ROOT, env=ENV, text=True,
                          timeout=300, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def train_stages(*runs: list[str]) -> list[subprocess.CompletedProcess]:
    """Several runs at once (each is mostly TensorFlow's start-up)."""
    procs = [subprocess.Popen([sys.executable, "mp2_train_stage.py", *a], cwd=ROOT, env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for a in runs]
    done = []
    for p, a in zip(procs, runs):
        stdout, stderr = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(a, p.returncode, stdout, stderr))
    return done


def error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout
    lines = [l for l in done.stderr.splitlines() if l.startswith("mp2_train_stage: error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> Path:
    """10 snapshots of LeNet-5 trained on synthetic data (Adam, 50-image steps), with their test accuracy."""
    directory = tmp_path_factory.mktemp("paramset") / "snapshots"
    ds = data.synthetic((28, 28, 1), 10, seed=0)
    params = {k: tf.Variable(v) for k, v in LENET.init(0).items()}
    opt = Adam(params, 1e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = LENET.forward(params, x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply(tape.gradient(loss, opt.vars))

    writer = ParamSetWriter(directory, LENET.layout, "synthetic", shard_size=4)
    rng = np.random.default_rng(0)
    for s in range(1, 201):
        idx = rng.choice(len(ds.train_y), 50, replace=False)
        step(ds.train_x[idx], ds.train_y[idx])
        if s % 20 == 0:
            acc = float(np.mean(np.argmax(LENET.forward(params, ds.test_x).numpy(), 1) == ds.test_y))
            vector = LENET.layout.flatten({k: v.numpy() for k, v in params.items()})
            writer.add(vector, step=s, epoch=s * 50 // len(ds.train_y), test_acc=acc)
    writer.flush()
    return directory


@pytest.fixture(scope="module")
def resumed(snapshots, tmp_path_factory):
    """1 epoch, then --epochs 2 --resume in the same --out; next to it 2 epochs in one go.

    Returns (out, first run's report, final report, final stdout, the uninterrupted run's report)."""
    base = tmp_path_factory.mktemp("stage")
    out, straight = base / "pred", base / "straight"
    common = [*SMALL, "--snapshots", str(snapshots)]
    first, whole = train_stages([*common, "--out", str(out), "--epochs", "1"],
                                [*common, "--out", str(straight), "--epochs", "2"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert whole.returncode == 0, whole.stdout + whole.stderr
    report1 = json.loads((out / "report.json").read_text())
    second = train_stage(*common, "--out", str(out), "--epochs", "2", "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming after epoch 1" in second.stdout
    return (out, report1, json.loads((out / "report.json").read_text()), second.stdout,
            json.loads((straight / "report.json").read_text()))


def test_result_loss_learns_and_writes_outputs(resumed):
    out, _, report, stdout, _ = resumed
    rows = report["rows"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    untrained, last = rows[0]["heldout_assembled_acc"], rows[-1]["heldout_assembled_acc"]
    assert last > 0.5 and last > untrained + 0.2, rows  # 10 classes: chance is 0.1
    assert rows[0]["train_loss"] is None and all(np.isfinite(r["train_loss"]) for r in rows[1:])
    for r in rows:
        assert r["gap"] == pytest.approx(r["heldout_own_acc"] - r["heldout_assembled_acc"])
        assert len(r["assembled_by_snapshot"]) == len(report["heldout"]) == 2  # 20 % of 10
    # The held-out snapshots' own accuracy, measured by the script on all 500 test images, is
    # what the collecting loop measured on the same images.
    own = np.mean([h["test_acc"] for h in report["heldout"]])
    assert rows[-1]["heldout_own_acc"] == pytest.approx(own)
    best = max(rows, key=lambda r: r["heldout_assembled_acc"])
    assert report["best_epoch"] == best["epoch"]

    with open(out / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in table] == [0, 1, 2]
    assert float(table[-1]["heldout_assembled_acc"]) == pytest.approx(last)

    weights, meta = load_checkpoint(str(out / "predictor.npz"), LENET.layout)
    assert meta["epoch"] == best["epoch"] and meta["loss"] == "result" and meta["dataset"] == "synthetic"
    assert meta["heldout_assembled_acc"] == pytest.approx(best["heldout_assembled_acc"])
    assert meta["heldout_own_acc"] == pytest.approx(best["heldout_own_acc"])
    assert f"best epoch {best['epoch']}" in stdout.splitlines()[-1]
    assert str(out / "predictor.npz") in stdout.splitlines()[-1]


def test_resume_continues_the_first_run(resumed):
    _, report1, report, _, straight = resumed
    assert [r["epoch"] for r in report1["rows"]] == [0, 1]
    assert report["rows"][:2] == report1["rows"]  # kept as they were, not run again
    assert report["resumed_from_epoch"] == 1
    # Weights, optimizer state and the random streams carry over: the resumed epoch 2 is the
    # uninterrupted run's epoch 2.
    for key in ("train_loss", "heldout_assembled_acc", "heldout_own_acc"):
        assert report["rows"][2][key] == pytest.approx(straight["rows"][2][key], rel=1e-5), key


def test_resume_refuses_other_settings(snapshots, resumed):
    out = resumed[0]
    done = train_stage(*SMALL, "--snapshots", str(snapshots), "--out", str(out), "--epochs", "3",
                       "--resume", "--lr", "0.01")
    line = error_line(done)
    assert "--lr was 0.001, now 0.01" in line


def test_adam_matches_the_textbook_update():
    start = np.array([0.5, -1.0, 2.0], np.float32)
    var = tf.Variable(start)
    opt = Adam({"x": var}, lr=0.1)
    x, m, v = start.astype(np.float64), 0.0, 0.0
    for t in range(1, 4):
        grad = np.array([1.0, -2.0, 0.5]) * t
        opt.apply([tf.constant(grad, tf.float32)])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        x = x - 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(var.numpy(), x, rtol=1e-5)
    state = opt.state()
    assert int(state["adam/t"]) == 3
    other = Adam({"x": tf.Variable(start)}, lr=0.1)
    other.load_state(state)
    np.testing.assert_array_equal(other.m[0].numpy(), opt.m[0].numpy())
    np.testing.assert_array_equal(other.v[0].numpy(), opt.v[0].numpy())


def test_mse_loss_and_snapshot_batches(snapshots, tmp_path):
    out = tmp_path / "mse"
    done = train_stage(*SMALL, "--snapshots", str(snapshots), "--out", str(out), "--epochs", "1",
                       "--loss", "mse", "--snapshot-batch", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert [r["epoch"] for r in report["rows"]] == [0, 1]
    assert report["steps_per_epoch"] == 3 * 10  # 8 training snapshots in batches of 3, 10 steps each
    assert load_checkpoint(str(out / "predictor.npz"), LENET.layout)[1]["loss"] == "mse"


def test_errors(snapshots, tmp_path):
    alexnet = models.get("alexnet", 10)
    other = tmp_path / "alexnet"
    writer = ParamSetWriter(other, alexnet.layout, "synthetic")
    for seed in (0, 1):
        writer.add(alexnet.init_vector(seed), step=seed, epoch=0, test_acc=0.1)
    writer.flush()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in snapshots.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    shard = damaged / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])

    relabelled = tmp_path / "relabelled"  # the same snapshots, said to come from Fashion-MNIST
    relabelled.mkdir()
    for f in snapshots.iterdir():
        (relabelled / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((relabelled / "manifest.json").read_text())
    (relabelled / "manifest.json").write_text(json.dumps({**manifest, "dataset": "fashion_mnist"}))

    empty = tmp_path / "empty"
    empty.mkdir()
    out = ["--out", str(tmp_path / "out")]
    model_clash, truncated, nothing, missing, dataset_clash = train_stages(
        [*SMALL, "--snapshots", str(other), *out],
        [*SMALL, "--snapshots", str(damaged), *out],
        [*SMALL, "--snapshots", str(empty), *out],
        [*SMALL, "--snapshots", str(tmp_path / "nowhere"), *out],
        [*SMALL, "--snapshots", str(relabelled), *out],
    )
    line = error_line(model_clash)
    assert "alexnet" in line and "lenet5" in line
    assert str(shard) in error_line(truncated)
    assert str(empty) in error_line(nothing) and "manifest.json" in error_line(nothing)
    assert "does not exist" in error_line(missing)
    line = error_line(dataset_clash)
    assert "synthetic" in line and "fashion_mnist" in line and "--cross-dataset" in line
