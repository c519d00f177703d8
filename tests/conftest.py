"""Test tiers, and fixtures several test files share.

Every test is in exactly one tier, a marker registered in pyproject.toml:
  unit     in-process and quick: scripts/test.sh runs this tier first (under a minute in all)
  cluster  starts processes of this project: a PS and workers, the stage, a script or a benchmark
           (tests/cluster.py's start/run/run_together, or subprocess)
  root     needs root (real network namespaces); skips itself without it
A test file says its tier once, `pytestmark = pytest.mark.unit`; a file whose tests differ marks
each test instead (and has no pytestmark). Collection stops, naming the tests, if any test has no
tier or more than one: a new test file must say which tier it is in.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "cluster", "root")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every collected test is checked, whatever the selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        tiers = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        listed = "\n  ".join(wrong[:20]) + (f"\n  ... and {len(wrong) - 20} more" if len(wrong) > 20 else "")
        raise pytest.UsageError(
            f"every test needs exactly one tier mark of {', '.join(TIERS)} (tests/conftest.py says how):\n  {listed}")


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 snapshots of LeNet-5 trained on synthetic data (Adam, 50-image steps), with their test accuracy:
    the parameter dataset of the stage's tests (test_train_stage.py, test_warm_start.py, test_pipeline.py).
    Built once in the session (tests/cluster.py's built_once): the fixtures built on it, shared too, name it."""
    from tests.cluster import built_once

    return Path(built_once(tmp_path_factory, "snapshots", _write_snapshots))


def _write_snapshots(base: Path) -> str:
    import numpy as np
    import tensorflow as tf

    import data
    import models
    from paramset import ParamSetWriter
    from helpers.optim import Adam

    lenet = models.get("lenet5", 10)
    directory = base / "snapshots"
    ds = data.synthetic((28, 28, 1), 10, seed=0)
    params = {k: tf.Variable(v) for k, v in lenet.init(0).items()}
    opt = Adam(params, 1e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = lenet.forward(params, x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply(tape.gradient(loss, opt.vars))

    writer = ParamSetWriter(directory, lenet.layout, "synthetic", shard_size=4)
    rng = np.random.default_rng(0)
    for s in range(1, 201):
        idx = rng.choice(len(ds.train_y), 50, replace=False)
        step(ds.train_x[idx], ds.train_y[idx])
        if s % 20 == 0:
            acc = float(np.mean(np.argmax(lenet.forward(params, ds.test_x).numpy(), 1) == ds.test_y))
            vector = lenet.layout.flatten({k: v.numpy() for k, v in params.items()})
            writer.add(vector, step=s, epoch=s * 50 // len(ds.train_y), test_acc=acc)
    writer.flush()
    return str(directory)


@pytest.fixture(scope="module")
def one_epoch_predictor(snapshots: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stage's --out of one epoch of training on `snapshots` (tests/test_train_stage.py's small settings):
    a trained predictor and its report. Built once in the session; copy it to change it."""
    from tests.cluster import built_once
    from tests.test_train_stage import SMALL, train_stage

    def train(base: Path) -> str:
        out = base / "pred"
        done = train_stage(*SMALL, "--snapshots", str(snapshots), "--out", str(out), "--epochs", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        return str(out)

    return Path(built_once(tmp_path_factory, "one-epoch-predictor", train))



def pytest_configure(config: pytest.Config) -> None:
    # Every process a test starts, through tests/cluster.py or not, picks its ports from this runner's range.
    import os

    from runtime.cluster import PORT_RANGE_ENV
    from tests.cluster import LAUNCHER_PORTS

    os.environ[PORT_RANGE_ENV] = f"{LAUNCHER_PORTS.start}-{LAUNCHER_PORTS.stop - 1}"
