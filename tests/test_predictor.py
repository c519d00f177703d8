"""The MP² predictor: shapes for every registered model, gradients, graph mode, checkpoints."""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import models
from models.layout import LayoutBuilder
from predictor import CheckpointError, Predictor, load_checkpoint, read_meta, save_checkpoint
from predictor.init import encode
from predictor.structure import head_name

pytestmark = pytest.mark.unit

CASES = [(name, 10) for name in models.NAMES] + [
    (name, 100) for name in ("lenet5", "resnet18") if name in models.NAMES
]


@pytest.fixture(scope="module")
def lenet():
    model = models.get("lenet5", 10)
    return model, Predictor(model.layout, seed=0)


def pushed_of(model, seed: int = 0) -> np.ndarray:
    return model.init_vector(seed)[: model.layout.pushed]


# --- structure ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,classes", CASES)
def test_output_shapes_and_passthrough(name, classes):
    model = models.get(name, classes)
    layout = model.layout
    pred = Predictor(layout, seed=0)
    assert pred.input_stage == ("vector" if layout.pushed < 4096 else "grid")
    x = pushed_of(model)
    out = pred(x).numpy()
    assert out.shape == (layout.total,)
    np.testing.assert_array_equal(out[: layout.pushed], x)
    assert np.all(np.isfinite(out))

    xb = np.stack([x, pushed_of(model, 1)])
    outb = pred(xb).numpy()
    assert outb.shape == (2, layout.total)
    np.testing.assert_array_equal(outb[:, : layout.pushed], xb)

    single, batch = pred.predict_params(x), pred.predict_params(xb)
    for p in layout.params:
        assert tuple(single[p.name].shape) == p.shape, p.name
        assert tuple(batch[p.name].shape) == (2, *p.shape), p.name
    for layer in layout.layers("predicted"):
        assert head_name(layer.name) in pred.weight_vars


@pytest.mark.parametrize("stage", ["vector", "grid"])
def test_encoder_matches_numpy_reference(lenet, stage):
    model, _ = lenet
    pred = Predictor(model.layout, seed=1, input_stage=stage)
    xb = np.stack([pushed_of(model, 2), pushed_of(model, 3)])
    ref = encode(pred.numpy_weights(), xb, stage)
    np.testing.assert_allclose(pred.hidden(tf.constant(xb)).numpy(), ref, rtol=1e-4, atol=1e-6)


def test_untrained_output_has_glorot_magnitude(lenet):
    # The heads are calibrated so an assembled network starts near its ordinary init scale.
    model, pred = lenet
    params = pred.predict_params(pushed_of(model))
    glorot = model.init(0)
    for layer in model.layout.layers("predicted"):
        name = layer.params[0].name
        ratio = np.std(params[name].numpy()) / np.std(glorot[name])
        assert 0.2 < ratio < 5, (name, ratio)


def test_bad_inputs_rejected(lenet):
    model, pred = lenet
    with pytest.raises(ValueError, match="pushed values"):
        pred(np.zeros(model.layout.pushed + 1, np.float32))
    with pytest.raises(ValueError):
        Predictor(model.layout, input_stage="bogus")
    weights = pred.numpy_weights()
    del weights["decoder/dense/w"]
    with pytest.raises(ValueError, match="decoder/dense/w"):
        Predictor(model.layout, weights=weights)


# --- gradients ---------------------------------------------------------------------------------
def test_gradients_reach_every_variable_and_not_the_input():
    model = models.get("lenet5", 10)
    layout = model.layout
    pred = Predictor(layout, seed=0)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((8, 28, 28, 1), dtype=np.float32))
    labels = tf.constant(rng.integers(0, 10, 8))
    x = tf.constant(pushed_of(model))

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = model.forward(pred.predict_params(x), images)
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )
        predicted_only = tf.reduce_sum(tf.square(pred(x)[layout.pushed :]))
    # The target model has no variables: the predictor's are everything that is trained.
    assert {v.ref() for v in tape.watched_variables()} == {v.ref() for v in pred.trainable_variables}
    assert len(pred.trainable_variables) == len(pred.weight_vars)
    grads = tape.gradient(loss, pred.trainable_variables)
    for v, g in zip(pred.trainable_variables, grads):
        assert g is not None and np.any(g.numpy() != 0), v.name
    # The predicted branch sees the pushed group as data.
    gx = tape.gradient(predicted_only, x)
    assert gx is None or not np.any(gx.numpy())

    before = pred(x).numpy()
    for v, g in zip(pred.trainable_variables, grads):
        v.assign_sub(0.1 * g)
    after = pred(x).numpy()
    np.testing.assert_array_equal(after[: layout.pushed], x.numpy())
    assert not np.allclose(after[layout.pushed :], before[layout.pushed :])


# --- graph mode --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in ("lenet5", "resnet18") if n in models.NAMES])
def test_graph_session_matches_eager(name):
    # lenet5 exercises the vector input stage, resnet18 the grid one (what the PS runs).
    model = models.get(name, 10)
    layout = model.layout
    pred = Predictor(layout, seed=0)
    xb = np.stack([pushed_of(model, 4), pushed_of(model, 5)])
    eager_out = pred(xb).numpy()
    weights = pred.numpy_weights()
    eager_seeded = Predictor(layout, seed=7).numpy_weights()
    with tf.Graph().as_default():
        ph = tf.compat.v1.placeholder(tf.float32, [None, layout.pushed])
        loaded = Predictor(layout, weights=weights)
        out = loaded(ph)
        single = loaded.predict_params(ph[0])
        seeded = Predictor(layout, seed=7)
        init = tf.compat.v1.variables_initializer(loaded.variables + seeded.variables)
        with tf.compat.v1.Session() as sess:
            sess.run(init)
            graph_out, graph_single = sess.run([out, single], {ph: xb})
            graph_seeded = sess.run(seeded.weight_vars)
    np.testing.assert_allclose(graph_out, eager_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layout.flatten(graph_single), eager_out[0], rtol=1e-5, atol=1e-6)
    for name, value in eager_seeded.items():  # the seeded init is the same in both modes
        np.testing.assert_array_equal(graph_seeded[name], value)


# --- checkpoints -------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, lenet):
    model, pred = lenet
    path = str(tmp_path / "predictor.npz")
    save_checkpoint(path, model.layout, pred.numpy_weights(),
                    {"dataset": "fashion-mnist", "epoch": 3, "test_accuracy": np.float32(0.81)})
    return path


def test_checkpoint_round_trip(saved, lenet):
    model, pred = lenet
    weights, meta = load_checkpoint(saved, model.layout)
    assert meta["format"] == "mp2-predictor" and meta["version"] == 2
    assert (meta["model"], meta["classes"]) == ("lenet5", 10)
    assert meta["fingerprint"] == model.layout.fingerprint()
    assert meta["input_stage"] == "vector" and meta["dataset"] == "fashion-mnist"
    assert meta["test_accuracy"] == pytest.approx(0.81)
    assert read_meta(saved) == meta
    x = np.stack([pushed_of(model, 6), pushed_of(model, 7)])
    np.testing.assert_array_equal(Predictor(model.layout, weights=weights)(x).numpy(), pred(x).numpy())
    with np.load(saved, allow_pickle=False) as z:  # nothing pickled: every entry loads
        for key in z.files:
            assert z[key].dtype != object
    assert os.listdir(os.path.dirname(saved)) == ["predictor.npz"]  # no temporary left behind


def test_checkpoint_for_another_model_or_class_count(saved):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(saved, models.get("lenet5", 100).layout)
    msg = str(e.value)
    assert "lenet5 with 10 classes" in msg and "lenet5 with 100 classes" in msg
    assert "predictor.npz" in msg and "--model lenet5" in msg

    b = LayoutBuilder("othernet", 10)
    b.conv("conv1", 3, 1, 4)
    b.dense("fc", 16, 10)
    other = b.build(pushed_layers=1)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(saved, other)
    msg = str(e.value)
    assert "lenet5 with 10 classes" in msg and "othernet with 10 classes" in msg
    assert other.fingerprint() in msg


def test_checkpoint_damaged_or_foreign_files(tmp_path, saved, lenet):
    layout = lenet[0].layout
    data = open(saved, "rb").read()
    cases = {
        "missing.npz": None,
        "truncated.npz": data[: len(data) // 2],
        "garbage.npz": b"not a checkpoint at all\n" * 10,
        "flipped.npz": data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1 :],
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "foreign.npz", a=np.ones(3))
    np.save(tmp_path / "array.npy", np.ones(3))
    for name in [*cases, "foreign.npz", "array.npy"]:
        path = str(tmp_path / name)
        for read in (lambda: load_checkpoint(path, layout), lambda: read_meta(path)):
            with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
                read()


def test_checkpoint_wrong_weight_shape(tmp_path, saved, lenet):
    layout = lenet[0].layout
    with np.load(saved, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["head/fc3/w"] = arrays["head/fc3/w"][:, :-1]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(CheckpointError, match=r"head/fc3/w has shape"):
        load_checkpoint(str(bad), layout)
    del arrays["head/fc3/w"]
    np.savez(bad, **arrays)
    with pytest.raises(CheckpointError, match=r"head/fc3/w is missing"):
        load_checkpoint(str(bad), layout)


def test_predictor_for_a_non_contiguous_push_set(tmp_path):
    """front+head pushes conv1, conv2 and fc3: the predictor fills fc1, fc2 in between."""
    model = models.get("lenet5", 10, push="front+head")
    net = Predictor(model.layout, seed=0)
    pushed = np.random.default_rng(0).normal(size=model.layout.pushed).astype(np.float32)
    full = net(pushed).numpy()
    assert full.shape == (model.layout.total,)
    got_pushed, got_predicted = model.layout.split(full)
    np.testing.assert_array_equal(got_pushed, pushed)  # passed through unchanged, in place
    assert got_predicted.shape == (120 * 256 + 120 + 84 * 120 + 84,)
    np.testing.assert_array_equal(model.layout.unflatten(full)["fc3/w"].reshape(-1), pushed[-850:-10])


def test_predictor_of_another_push_set_is_refused_naming_both(tmp_path):
    front = models.get("lenet5", 10)
    path = tmp_path / "front.npz"
    save_checkpoint(str(path), front.layout, Predictor(front.layout, seed=0).numpy_weights())
    head = models.get("lenet5", 10, push="front+head")
    with pytest.raises(CheckpointError, match=r"conv1, conv2\b.*conv1, conv2, fc3"):
        load_checkpoint(str(path), head.layout)


def test_predict_params_backpropagates_into_the_predicted_layers_only():
    """The assembled network's loss reaches the predictor through the predicted layers: the same values
    and gradients as the joined vector's, and no backward pass of the pushed layers' ops in the graph."""
    model = models.get("lenet5", 10, push="front+head")
    layout = model.layout
    pred = Predictor(layout, seed=4)
    rng = np.random.default_rng(1)
    images, labels = rng.random((16, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 16)
    x = pushed_of(model, 2)

    def loss_of(params):
        logits = model.forward(params, images)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))

    for pushed in (x, x[None, :]):  # unbatched and batched
        params, joined = pred.predict_params(pushed), pred(pushed)
        for name, value in layout.unflatten(joined if joined.shape.rank == 1 else joined[0]).items():
            np.testing.assert_array_equal(tf.reshape(params[name], value.shape).numpy(), value.numpy(), err_msg=name)

    def gradients(params_of):
        with tf.GradientTape() as tape:
            loss = loss_of(params_of(tf.constant(x)))
        return tape.gradient(loss, list(pred.weight_vars.values()))

    for a, b in zip(gradients(pred.predict_params), gradients(lambda v: layout.unflatten(pred(v)))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-8)

    def target_backward_ops(params_of) -> set[str]:
        """The backward ops of the target network's own layers (the predictor's encoder has convs too)."""
        graph = tf.function(lambda v: tf.gradients(loss_of(params_of(v)), list(pred.weight_vars.values()))) \
            .get_concrete_function(tf.TensorSpec([layout.pushed], tf.float32)).graph
        return {op.type for op in graph.get_operations() if not op.name.startswith(f"gradients/{pred.name}/")}

    backward = {"Conv2DBackpropFilter", "Conv2DBackpropInput", "MaxPoolGrad"}
    assert backward <= target_backward_ops(lambda v: layout.unflatten(pred(v)))  # through the joined vector
    assert not backward & target_backward_ops(pred.predict_params)
