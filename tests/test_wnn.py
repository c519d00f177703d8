"""The WNN: features, network, checkpoint, training on a synthetic trajectory, the PS's graph ops,
the regular snapshot option and mp2_train_wnn.py as a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import data
import models
import paramset
from helpers import npzio
from paramset import ParamSetWriter, SnapshotCollector
from tests.cluster import ENV, ROOT, check_provenance, run_in_one
from wnn import Nowcaster, WnnCheckpointError, checkpoint, features, network, training

LENET = models.get("lenet5", 10)


def trajectory(n: int, steps: list[int] | None = None, seed: int = 0) -> np.ndarray:
    """[n, total] LeNet-5 vectors whose weights decay exponentially toward their own targets
    (time constants 4 to 40 snapshots), with a little noise: a trajectory with a learnable future."""
    rng = np.random.default_rng(seed)
    total = LENET.layout.total
    start, goal = rng.normal(0, 0.1, total), rng.normal(0, 0.1, total)
    tau = rng.uniform(4, 40, total)
    t = np.arange(n)[:, None] if steps is None else np.asarray(steps)[:, None] / (steps[1] - steps[0])
    return (goal + (start - goal) * np.exp(-t / tau) + rng.normal(0, 2e-4, (n, total))).astype(np.float32)


def write_paramset(directory: Path, vectors: np.ndarray, steps: list[int]) -> Path:
    writer = ParamSetWriter(directory, LENET.layout, "synthetic", shard_size=8)
    for vector, step in zip(vectors, steps):
        writer.add(vector, step=step, epoch=1, test_acc=0.0)
    writer.flush()
    return directory


@pytest.fixture(scope="module")
def regular_dir(tmp_path_factory) -> Path:
    steps = [10 * (i + 1) for i in range(40)]
    return write_paramset(tmp_path_factory.mktemp("wnn") / "snaps", trajectory(40), steps)


# --- features ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_features_round_trip_and_numpy_equals_tensorflow():
    rng = np.random.default_rng(1)
    history = rng.normal(0, 0.05, (features.HISTORY, 1000)).astype(np.float32)
    history[:, 0] = 0.3  # a weight that never moved: finite inputs all the same
    target = rng.normal(0, 0.05, 1000).astype(np.float32)
    enc = features.encode(history)
    assert enc.normed.shape == (5, 1000) and enc.deltas.shape == (4, 1000)
    assert np.all(np.isfinite(enc.normed)) and np.allclose(enc.normed[0], 0)
    # The history spans at most half the normalised range, so a change of 1 reaches one range beyond.
    assert np.all(enc.normed.max(0) - enc.normed.min(0) <= 0.5 + 1e-6)
    back = features.decode(features.target_change(target, enc), enc)
    np.testing.assert_allclose(back, target, atol=1e-6)
    tf_enc = features.encode(tf.constant(history))
    for ours, theirs in zip(enc, tf_enc):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-7)


# --- network -------------------------------------------------------------------------------------
@pytest.mark.unit
def test_network_size_and_shapes():
    # per stream: in (w*64+64), squeeze 64*8+8, base/gain/rate 3*(8*64+64), out 64*32+32; head 64+1
    by_hand = (5 * 64 + 64) + (4 * 64 + 64) + 2 * (64 * 8 + 8 + 3 * (8 * 64 + 64) + 64 * 32 + 32) + 65
    assert network.count() == by_hand == 9425
    params = network.init(0)
    assert {k: v.shape for k, v in params.items()} == network.shapes()
    history = np.cumsum(np.random.default_rng(2).normal(0, 0.01, (5, 2500)), 0).astype(np.float32)
    whole = network.predict(params, history).numpy()
    chunked = network.predict(params, history, chunk=1000).numpy()  # 3 blocks, the last one padded
    assert whole.shape == (2500,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)
    # The tanh bounds the step: at most one normalised unit from the last value.
    enc = features.encode(history)
    assert np.all(np.abs(whole - history[-1]) <= enc.scale * (1 + 1e-5))
    assert not np.allclose(whole, history[-1])


@pytest.mark.unit
def test_kinds_follow_the_layout():
    kinds = {p.name: network.kind_of(p) for p in LENET.layout.params}
    assert kinds["conv1/w"] == "conv" and kinds["conv1/b"] == "bias"
    dense = [p for p in LENET.layout.params if p.kind == "dense"]
    assert dense and kinds[dense[0].name] == "dense"
    indices = training.kind_indices(LENET.layout)
    assert sum(len(v) for v in indices.values()) == LENET.layout.total
    assert len(np.unique(np.concatenate(list(indices.values())))) == LENET.layout.total


# --- checkpoint ----------------------------------------------------------------------------------
@pytest.mark.unit
def test_checkpoint_round_trip_and_refusals(tmp_path):
    params = {k: network.init(i) for i, k in enumerate(network.KINDS)}
    path = tmp_path / "wnn.npz"
    checkpoint.save(path, params, {"spacing": 1, "horizon": 5, "trained_epochs": 3})
    loaded, meta = checkpoint.load(path)
    assert meta["kinds"] == list(network.KINDS) and meta["history"] == 5 and meta["horizon"] == 5
    for kind in network.KINDS:
        for name, value in params[kind].items():
            np.testing.assert_array_equal(loaded[kind][name], value)
    predictor_like = tmp_path / "predictor.npz"
    npzio.write(predictor_like, {"w": np.zeros(3, np.float32)}, {"format": "mp2-predictor"})
    with pytest.raises(WnnCheckpointError, match="is not a WNN checkpoint .format 'mp2-predictor'"):
        checkpoint.load(predictor_like)
    bare = tmp_path / "bare.npz"
    np.savez(bare, w=np.zeros(3))
    with pytest.raises(WnnCheckpointError, match="is not a WNN checkpoint"):
        checkpoint.load(bare)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(WnnCheckpointError, match="not a readable WNN checkpoint"):
        checkpoint.load(garbage)
    with pytest.raises(WnnCheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz")


# --- training ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_training_beats_no_change_on_held_out_stretch(regular_dir):
    snaps = paramset.read([regular_dir], LENET.layout)
    trajs = training.trajectories(snaps)
    assert [t.spacing for t in trajs] == [10]
    train, held = training.anchors(trajs, spacing=1, horizon=5, holdout=0.25)
    cut = 30  # 40 snapshots, the last 10 held out
    assert all(a.target < cut for a in train) and all(a.history[0] >= cut for a in held)
    assert len(train) == cut - 9 and len(held) == 10 - 9
    indices = training.kind_indices(LENET.layout)
    rng = np.random.default_rng(0)
    results = {}
    for i, kind in enumerate(network.KINDS):
        train_pairs = training.sample_pairs(snaps, train, indices[kind], 400, rng)
        held_pairs = training.sample_pairs(snaps, held, indices[kind], 2000, rng)
        trainer = training.KindTrainer(network.init(i), 3e-3, 1e-6, 0.1)
        before = training.evaluate(trainer.numpy(), held_pairs)
        for epoch in range(6):
            trainer.train_epoch(train_pairs, 256, np.random.default_rng(epoch))
        results[kind] = (before, training.evaluate(trainer.numpy(), held_pairs))
    for kind, (before, after) in results.items():
        # Untrained, the network barely moves the weights: about the no-change loss.
        assert before["loss"] == pytest.approx(before["no_change_loss"], rel=0.2), (kind, before)
        assert after["loss"] < 0.6 * after["no_change_loss"], (kind, after)
        assert after["weight_mae"] < 0.6 * after["no_change_weight_mae"], (kind, after)


@pytest.mark.unit
def test_irregular_and_short_trajectories_are_refused(tmp_path):
    irregular = write_paramset(tmp_path / "irr", trajectory(12), [10, 20, 25, 40, 50, 60, 70, 80, 90, 100, 110, 120])
    snaps = paramset.read([irregular], LENET.layout)
    with pytest.raises(training.WnnError, match="irregular steps .gaps from 5 to 15"):
        training.trajectories(snaps)
    assert training.trajectories(snaps, allow_irregular=True)[0].spacing is None
    trajs = training.trajectories(snaps, allow_irregular=True)
    with pytest.raises(training.WnnError, match="too few snapshots .12. .* one example spans 10 snapshots"):
        training.anchors(trajs, spacing=1, horizon=5, holdout=0.2)


# --- the PS's graph ops --------------------------------------------------------------------------
@pytest.mark.unit
def test_graph_nowcaster_matches_eager_predict(tmp_path):
    params = {k: network.init(10 + i) for i, k in enumerate(network.KINDS)}
    path = tmp_path / "wnn.npz"
    checkpoint.save(path, params, {"spacing": 1, "horizon": 5})
    vectors = trajectory(7, seed=3)
    indices = training.kind_indices(LENET.layout)
    expected = training.jump_vector(params, vectors[2:7], indices)  # the last five, oldest first
    assert not np.allclose(expected, vectors[-1])
    graph = tf.Graph()
    with graph.as_default():
        nowcaster = Nowcaster(LENET.layout, str(path), "/cpu:0", chunk=10000)  # conv/dense in several chunks
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(nowcaster.initializer)
            for vector in vectors[:4]:
                nowcaster.record(session, vector)
            with pytest.raises(ValueError, match="needs 5 recordings before a jump, it has 4"):
                nowcaster.jump(session)
            for vector in vectors[4:]:  # 7 recordings: the ring buffer has wrapped
                nowcaster.record(session, vector)
            assert nowcaster.recorded(session) == 7
            jumped = nowcaster.jump(session)
            assert [v.shape.as_list() for v in nowcaster.variables] == [[5, LENET.layout.total], []]
    np.testing.assert_allclose(jumped, expected, rtol=1e-5, atol=1e-6)


# --- the regular snapshot option -----------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("regular", [True, False])
def test_collector_regular_spacing(tmp_path, regular):
    ds = data.synthetic((28, 28, 1), 10, seed=0)
    vector = LENET.init_vector(0)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        writer = ParamSetWriter(tmp_path / "snaps", LENET.layout, "synthetic")
        collector = SnapshotCollector(session, "/cpu:0", LENET, ds, writer, every=10, seed=0, eval_images=50,
                                      regular=regular)
        for step in range(60):
            collector.after_step(step, 0, vector)
        collector.flush()
    steps = [r["step"] for r in json.loads((tmp_path / "snaps" / "manifest.json").read_text())["snapshots"]]
    assert len(steps) == 6
    assert all(10 * w < s <= 10 * (w + 1) for w, s in enumerate(steps))  # one per window, either way
    if regular:
        assert steps == [10, 20, 30, 40, 50, 60]
    else:
        assert len(set(np.diff(steps))) > 1  # random steps (seeded), as before


# --- the script ----------------------------------------------------------------------------------
def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "mp2_train_wnn.py", *args], cwd=ROOT, env=ENV, text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


@pytest.mark.cluster
def test_script_trains_reports_and_saves(regular_dir, tmp_path):
    out = tmp_path / "out"
    done = run_script("--model", "lenet5", "--dataset", "synthetic", "--snapshots", str(regular_dir),
                      "--out", str(out), "--epochs", "3", "--weights", "300", "--batch", "256", "--lr", "0.003",
                      "--holdout", "0.25", "--eval-images", "100")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert report["parameters_per_nowcaster"] == 9425
    assert rows[-1]["heldout_loss"] < 0.8 * rows[-1]["heldout_no_change_loss"], rows[-1]
    assert {"heldout_jumped_acc", "heldout_last_acc", "accuracy_gain", "conv_train_loss"} <= set(rows[-1])
    check_provenance(report["provenance"])
    assert (out / "report.csv").read_text().splitlines()[0].startswith("epoch,")
    _, meta = checkpoint.load(out / "wnn.npz")
    assert (meta["spacing"], meta["horizon"], meta["recording_steps"], meta["horizon_steps"]) == (1, 5, 10, 50)
    assert meta["trained_epochs"] == report["best"]["epoch"] > 0


@pytest.mark.cluster
def test_script_errors_are_one_line(tmp_path):
    """The cases in one process (tests/cluster.py's run_in_one: TensorFlow starts once for them all)."""
    irregular = write_paramset(tmp_path / "irr", trajectory(12), [10, 20, 25, 40, 50, 60, 70, 80, 90, 100, 110, 120])
    common = ["--dataset", "synthetic", "--eval-images", "0", "--out", str(tmp_path / "o")]
    cases = [
        (["--snapshots", str(irregular)], 1, "irregular steps"),
        (["--snapshots", str(irregular), "--allow-irregular"], 1, "too few snapshots"),
        (["--snapshots", str(tmp_path / "nothing")], 1, "does not exist"),
        (["--snapshots", str(irregular), "--horizon", "0"], 2, "--horizon: must be at least 1, got 0"),
    ]
    runs = run_in_one("mp2_train_wnn.py", *[[*common, *extra] for extra, _, _ in cases], merge=False)
    for (extra, code, text), done in zip(cases, runs):
        assert done.returncode == code, (extra, done.stderr)
        errors = [l for l in done.stderr.splitlines() if "error:" in l]
        assert len(errors) == 1 and text in errors[0], (extra, done.stderr)
        assert "Traceback" not in done.stderr
