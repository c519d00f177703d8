"""Decoder heads of other ranks than the reference's: conv heads of rank R > 1 (--head-rank) and dense heads
through an R-value bottleneck (--dense-rank), next to the faithful heads they must not change."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import models
from helpers import npzio
from predictor import CheckpointError, Predictor, load_checkpoint, read_meta, save_checkpoint
from predictor.init import encode
from predictor.structure import (
    HIDDEN, choose_stage, down_name, head_channels, head_name, projection_name, weight_specs,
)
from runtime.methods.mp2_options import MP2Options
from tests.cluster import ROOT, SMALL, run

# LeNet-5 pushing only conv1 predicts conv2 (a conv head) and the dense layers: small enough for every test.
CONV_PREDICTED = "conv1"


def small_model():
    return models.get("lenet5", 10, push=CONV_PREDICTED)


def conv_layers(layout):
    return [layer for layer in layout.layers("predicted") if layer.kind == "conv"]


def size(specs) -> int:
    return sum(math.prod(s.shape) for s in specs)


# --- structure ---------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("name", models.NAMES)
def test_rank_one_is_the_faithful_structure(name):
    layout = models.get(name, 10).layout
    stage = choose_stage(layout)
    specs = weight_specs(layout, stage)
    assert specs == weight_specs(layout, stage, 1)
    shapes = {s.name: s.shape for s in specs}
    assert not [n for n in shapes if n.endswith("/proj")]
    for layer in conv_layers(layout):
        assert shapes[head_name(layer.name)] == (1, 1, 1, head_channels(layer.size))
    assert Predictor(layout, seed=0).head_rank == 1


@pytest.mark.unit
@pytest.mark.parametrize("name", models.NAMES)
def test_rank_r_builds_for_every_model(name):
    model = models.get(name, 10)
    layout, rank = model.layout, 3
    pred = Predictor(layout, seed=0, head_rank=rank)
    convs = conv_layers(layout)
    assert pred.head_rank == (rank if convs else 1)
    # Each conv layer gains its projection [64, 64 R] and R - 1 more input channels on its 1x1 kernel.
    grown = sum(HIDDEN * HIDDEN * rank + (rank - 1) * head_channels(layer.size) for layer in convs)
    stage = pred.input_stage
    assert size(weight_specs(layout, stage, rank)) == size(weight_specs(layout, stage)) + grown
    for layer in convs:
        assert tuple(pred.weight_vars[projection_name(layer.name)].shape) == (HIDDEN, HIDDEN * rank)
        assert tuple(pred.weight_vars[head_name(layer.name)].shape) == (1, 1, rank, head_channels(layer.size))
    x = model.init_vector(0)[: layout.pushed]
    out = pred(x).numpy()
    assert out.shape == (layout.total,) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[: layout.pushed], x)


@pytest.mark.unit
def test_rank_r_decodes_each_conv_layer_from_its_own_projection():
    """Against a numpy reference: out[p*k + c] = sum_r (h P)[p, r] * w[r, c]."""
    model, rank = small_model(), 4
    layout = model.layout
    pred = Predictor(layout, seed=2, head_rank=rank)
    w = pred.numpy_weights()
    x = np.stack([model.init_vector(s)[: layout.pushed] for s in (3, 4)])
    h = encode(w, x, pred.input_stage)
    full = pred(x).numpy()
    (layer,) = conv_layers(layout)
    k = head_channels(layer.size)
    u = (h @ w[projection_name(layer.name)]).reshape(2, HIDDEN, rank)
    ref = (u @ w[head_name(layer.name)].reshape(rank, k)).reshape(2, -1)[:, : layer.size]
    a, b = layout.offset(layer.params[0].name)[0], layout.offset(layer.params[-1].name)[1]  # kernel and bias
    assert b - a == layer.size
    np.testing.assert_allclose(full[:, a:b], ref, rtol=1e-4, atol=1e-6)
    # No longer a rank-one image of the hidden units: the layer's [positions, channels] map has rank R.
    rows = layer.size // k  # the positions whose k channels all lie in this layer
    singular = np.linalg.svd(full[0, a:a + rows * k].reshape(rows, k).astype(np.float64), compute_uv=False)
    assert np.sum(singular > 1e-4 * singular[0]) == rank, singular


@pytest.mark.unit
def test_rank_r_keeps_the_encoder_and_the_init_scale():
    model = small_model()
    layout = model.layout
    faithful, ranked = Predictor(layout, seed=5), Predictor(layout, seed=5, head_rank=6)
    wf, wr = faithful.numpy_weights(), ranked.numpy_weights()
    for name in wf:
        if not name.startswith("head/"):  # one seed, one encoder, whatever the heads
            np.testing.assert_array_equal(wf[name], wr[name], err_msg=name)
    params, glorot = ranked.predict_params(model.init_vector(0)[: layout.pushed]), model.init(0)
    for layer in layout.layers("predicted"):
        name = layer.params[0].name
        ratio = np.std(params[name].numpy()) / np.std(glorot[name])
        assert 0.5 < ratio < 2, (name, ratio)


@pytest.mark.unit
def test_gradients_reach_the_projections():
    model = small_model()
    pred = Predictor(model.layout, seed=0, head_rank=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(pred(model.init_vector(0)[: model.layout.pushed])))
    grads = tape.gradient(loss, list(pred.weight_vars.values()))
    for name, g in zip(pred.weight_vars, grads):
        assert g is not None and float(tf.reduce_sum(tf.abs(g))) > 0, name


@pytest.mark.unit
def test_bad_ranks_and_mismatched_weights_refused():
    layout = small_model().layout
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="head_rank"):
            Predictor(layout, seed=0, head_rank=bad)
    weights = Predictor(layout, seed=0, head_rank=3).numpy_weights()
    with pytest.raises(ValueError, match="rank-3"):
        Predictor(layout, weights=weights, head_rank=1)


# --- checkpoints -------------------------------------------------------------------------------
@pytest.mark.unit
def test_rank_r_checkpoint_round_trips(tmp_path):
    model, rank = small_model(), 5
    layout = model.layout
    pred = Predictor(layout, seed=1, head_rank=rank)
    path = str(tmp_path / "predictor.npz")
    save_checkpoint(path, layout, pred.numpy_weights(), {"trained_epochs": 2})
    weights, meta = load_checkpoint(path, layout)
    assert meta["head_rank"] == rank and read_meta(path)["head_rank"] == rank
    # As the runtime builds it: from the weights alone, with another seed.
    rebuilt = Predictor(layout, weights=weights, seed=9)
    assert rebuilt.head_rank == rank
    x = np.stack([model.init_vector(s)[: layout.pushed] for s in (6, 7)])
    np.testing.assert_array_equal(rebuilt(x).numpy(), pred(x).numpy())


@pytest.mark.unit
def test_a_checkpoint_without_a_head_rank_is_faithful_and_still_loads(tmp_path):
    """Checkpoints written before --head-rank carry no head_rank: they are rank one and load as before."""
    layout = small_model().layout
    path = str(tmp_path / "old.npz")
    save_checkpoint(path, layout, Predictor(layout, seed=0).numpy_weights())
    arrays, meta = npzio.read(path)
    del meta["head_rank"]
    npzio.write(path, arrays, meta)
    weights, meta = load_checkpoint(path, layout)
    assert "head_rank" not in meta and Predictor(layout, weights=weights).head_rank == 1


@pytest.mark.unit
def test_a_head_rank_that_contradicts_the_weights_is_refused(tmp_path):
    layout = small_model().layout
    path = str(tmp_path / "predictor.npz")
    save_checkpoint(path, layout, Predictor(layout, seed=0, head_rank=2).numpy_weights())
    arrays, meta = npzio.read(path)
    npzio.write(path, arrays, {**meta, "head_rank": 1})
    with pytest.raises(CheckpointError, match="head rank 1 does not match its weights"):
        load_checkpoint(path, layout)


# --- dense heads through a bottleneck (--dense-rank) -------------------------------------------
def dense_layers(layout):
    return [layer for layer in layout.layers("predicted") if layer.kind == "dense"]


@pytest.mark.unit
def test_dense_rank_decodes_each_dense_layer_through_its_bottleneck():
    """Against a numpy reference, out = (h D) W; R·(64 + n) weights per dense layer instead of 64·n."""
    model, rank = models.get("lenet5", 10, push="front+head"), 8
    layout = model.layout
    faithful, pred = Predictor(layout, seed=3), Predictor(layout, seed=3, dense_rank=rank)
    dense = dense_layers(layout)
    assert dense and pred.dense_rank == rank and faithful.dense_rank is None
    shrunk = sum(HIDDEN * layer.size - rank * (HIDDEN + layer.size) for layer in dense)
    assert size(weight_specs(layout, pred.input_stage)) - size(weight_specs(layout, pred.input_stage, 1, rank)) == shrunk
    w = pred.numpy_weights()
    x = np.stack([model.init_vector(s)[: layout.pushed] for s in (3, 4)])
    h, full = encode(w, x, pred.input_stage), pred(x).numpy()
    for layer in dense:
        a, b = layout.offset(layer.params[0].name)[0], layout.offset(layer.params[-1].name)[1]
        ref = (h @ w[down_name(layer.name)]) @ w[head_name(layer.name)]
        np.testing.assert_allclose(full[:, a:b], ref, rtol=1e-4, atol=1e-6)
        # The layer's values for a batch of inputs span at most R directions.
        many = pred(np.stack([model.init_vector(s)[: layout.pushed] for s in range(12)])).numpy()[:, a:b]
        singular = np.linalg.svd(many.astype(np.float64), compute_uv=False)
        assert np.sum(singular > 1e-5 * singular[0]) <= rank, singular
    # One seed, one encoder; the bottlenecked heads start at the reference's scale.
    for name, value in faithful.numpy_weights().items():
        if not name.startswith("head/"):
            np.testing.assert_array_equal(value, w[name], err_msg=name)
    params, glorot = pred.predict_params(model.init_vector(0)[: layout.pushed]), model.init(0)
    for layer in dense:
        ratio = np.std(params[layer.params[0].name].numpy()) / np.std(glorot[layer.params[0].name])
        assert 0.5 < ratio < 2, (layer.name, ratio)


@pytest.mark.unit
def test_dense_rank_checkpoints_round_trip_and_contradictions_are_refused(tmp_path):
    model = models.get("lenet5", 10, push="front+head")
    layout = model.layout
    pred = Predictor(layout, seed=1, dense_rank=4)
    path = str(tmp_path / "predictor.npz")
    save_checkpoint(path, layout, pred.numpy_weights())
    weights, meta = load_checkpoint(path, layout)
    assert meta["dense_rank"] == 4
    rebuilt = Predictor(layout, weights=weights, seed=9)  # as the runtime builds it: the weights fix the rank
    x = model.init_vector(6)[: layout.pushed]
    assert rebuilt.dense_rank == 4
    np.testing.assert_array_equal(rebuilt(x).numpy(), pred(x).numpy())
    with pytest.raises(ValueError, match="dense rank 4, not 8"):
        Predictor(layout, weights=weights, dense_rank=8)
    for bad in (0, 64, 2.0, True):
        with pytest.raises(ValueError, match="dense_rank"):
            Predictor(layout, seed=0, dense_rank=bad)
    arrays, meta = npzio.read(path)
    npzio.write(path, arrays, {**meta, "dense_rank": None})
    with pytest.raises(CheckpointError, match="dense rank None does not match its weights"):
        load_checkpoint(path, layout)
    # A checkpoint from before the dense rank (no dense_rank in its meta) has the reference's heads and loads.
    save_checkpoint(path, layout, Predictor(layout, seed=0).numpy_weights())
    arrays, meta = npzio.read(path)
    del meta["dense_rank"]
    npzio.write(path, arrays, meta)
    assert Predictor(layout, weights=load_checkpoint(path, layout)[0]).dense_rank is None


@pytest.mark.unit
def test_online_mp2s_dense_rank():
    """Graph rounds train a bottlenecked predictor by default; 0 and stage rounds train the reference's heads."""
    assert MP2Options().online_dense_rank == MP2Options().dense_rank > 0
    assert MP2Options(dense_rank=0).online_dense_rank is None
    assert MP2Options(online_rounds="stage").online_dense_rank is None


# --- the training stage and the runtime -------------------------------------------------------
@pytest.mark.cluster
def test_stage_refuses_a_bad_head_rank():
    done = subprocess.run([sys.executable, "mp2_train_stage.py", "--snapshots", "nowhere", "--head-rank", "0"],
                          cwd=ROOT, text=True, capture_output=True, timeout=120)
    assert done.returncode == 2
    assert "--head-rank: must be at least 1, got 0" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


@pytest.mark.cluster
def test_the_runtime_rebuilds_a_rank_r_predictor_from_its_checkpoint(tmp_path):
    """A real MP² run (PS and workers as processes) given a rank-3 checkpoint predicts with it: the PS
    rebuilds the predictor from the checkpoint alone, and a rank-1 build would refuse its weights."""
    model = small_model()
    path = tmp_path / "predictor.npz"
    save_checkpoint(str(path), model.layout, Predictor(model.layout, seed=0, head_rank=3).numpy_weights())
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--predictor", str(path), "--push", CONV_PREDICTED,
               "--epochs", "1", "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pushed_layers"] == [CONV_PREDICTED]
    assert summary["phases"].get("partial", 0) > 0, summary["phases"]  # steps that used the predictor
    assert np.isfinite(summary["final_test_acc"])
