"""Target models: exact sizes, layouts, forward passes (eager and graph), gradients, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import models
from models import PREDICTED, PUSHED

ALL = ("lenet5", "alexnet", "vgg15", "resnet18", "resnet34", "resnet50")

# (total with 10 classes, pushed) as stated in docs/design/models.md, "Models".
EXACT = {
    "lenet5": (44_426, 2_572),
    "resnet18": (3_139_274, 185_664),
    "alexnet": (3_751_754, 617_344),
    "vgg15": (4_722_698, 260_160),
}


def _images(model, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 1, (batch, *model.input_shape)).astype(np.float32))


def _fc_last(layout):
    """The classifier layer (last), as (fan-in, classes)."""
    w = layout.params[-2]
    assert w.name.endswith("/w") and len(w.shape) == 2
    return w.shape


@pytest.mark.unit
def test_registry_names():
    assert set(ALL) <= set(models.NAMES)
    assert models.get("ResNet-18").name == "resnet18"
    with pytest.raises(ValueError, match="known models"):
        models.get("resnet19")


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_sizes(name):
    layout = models.get(name, 10).layout
    assert (layout.total, layout.pushed) == EXACT[name]
    assert layout.predicted == layout.total - layout.pushed


@pytest.mark.unit
def test_resnet18_structure():
    layout = models.get("resnet18", 10).layout
    layers = layout.layers()
    assert len(layers) == 21
    pushed = [l.name for l in layout.layers(PUSHED)]
    assert pushed == [
        "stem", "s1u1c1", "s1u1c2", "s1u2c1", "s1u2c2",
        "s2u1c1", "s2u1c2", "s2u1sc", "s2u2c1", "s2u2c2",
    ]
    shapes = {p.name: p.shape for p in layout.params}
    assert shapes["s3u1sc/w"] == (3, 3, 64, 128)
    assert shapes["fc/w"] == (256, 10)


@pytest.mark.unit
@pytest.mark.parametrize("name,kind,counts", [
    ("resnet34", "basic", (3, 4, 6, 3)),
    ("resnet50", "bottleneck", (3, 4, 6, 3)),
])
def test_deep_resnet_sizes(name, kind, counts):
    m10, m100 = models.get(name, 10), models.get(name, 100)
    layout = m10.layout
    assert layout.total == sum(p.size for p in layout.params)
    assert layout.total == sum(int(np.prod(p.shape)) for p in layout.params)

    # pushed = the stem and every conv layer (shortcuts included) of stages 1 and 2
    in_front = lambda layer: layer == "stem" or layer[:2] in ("s1", "s2")
    assert {l.name for l in layout.layers(PUSHED)} == {
        l.name for l in layout.layers() if in_front(l.name)
    }
    assert layout.pushed == sum(p.size for p in layout.params if in_front(p.layer))
    units = sum(1 for l in layout.layers() if l.name.endswith("c1"))
    assert units == sum(counts)
    convs_per_unit = 2 if kind == "basic" else 3
    shortcuts = [l.name for l in layout.layers() if l.name.endswith("sc")]
    n_pushed = 1 + convs_per_unit * (counts[0] + counts[1]) + sum(s[:2] in ("s1", "s2") for s in shortcuts)
    assert len(layout.layers(PUSHED)) == n_pushed
    if kind == "basic":  # 3x3 shortcut in the first unit of stages 2-4 only
        assert shortcuts == ["s2u1sc", "s3u1sc", "s4u1sc"]
        assert all(p.shape[:2] == (3, 3) for p in layout.params if p.layer in shortcuts and p.name.endswith("/w"))
    else:  # 1x1 projection in the first unit of every stage
        assert shortcuts == ["s1u1sc", "s2u1sc", "s3u1sc", "s4u1sc"]
        assert all(p.shape[:2] == (1, 1) for p in layout.params if p.layer in shortcuts and p.name.endswith("/w"))

    fan_in, classes = _fc_last(layout)
    assert classes == 10 and fan_in == (256 if kind == "basic" else 1024)
    assert m100.layout.total - layout.total == (100 - 10) * (fan_in + 1)
    assert m100.layout.pushed == layout.pushed


@pytest.mark.unit
@pytest.mark.parametrize("name", ALL)
def test_layout_order_and_100_classes(name):
    m10, m100 = models.get(name, 10), models.get(name, 100)
    groups = [p.group for p in m10.layout.params]
    first_predicted = groups.index(PREDICTED)
    assert all(g == PUSHED for g in groups[:first_predicted])
    assert all(g == PREDICTED for g in groups[first_predicted:])
    fan_in, _ = _fc_last(m10.layout)
    assert m100.layout.total - m10.layout.total == 90 * (fan_in + 1)
    assert m10.layout.fingerprint() != m100.layout.fingerprint()


@pytest.mark.unit
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("name", ALL)
def test_forward_eager(name, classes):
    model = models.get(name, classes)
    params = {k: tf.constant(v) for k, v in model.init(seed=1).items()}
    logits = model.forward(params, _images(model))
    assert logits.shape == (2, classes)
    assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.unit
@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_forward_in_v1_graph_session(name):
    model = models.get(name, 10)
    init = model.init(seed=2)
    x = _images(model).numpy()
    eager = model.forward({k: tf.constant(v) for k, v in init.items()}, tf.constant(x)).numpy()
    with tf.Graph().as_default():
        params = {k: tf.Variable(v, name=k.replace("/", "_")) for k, v in init.items()}
        images = tf.compat.v1.placeholder(tf.float32, [None, *model.input_shape])
        logits = model.forward(params, images)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            out = sess.run(logits, {images: x})
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.unit
@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_gradients_reach_every_tensor(name):
    model = models.get(name, 10)
    params = {k: tf.Variable(v) for k, v in model.init(seed=3).items()}
    labels = tf.constant([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        logits = model.forward(params, _images(model, batch=4))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads = tape.gradient(loss, params)
    for k, g in grads.items():
        assert g is not None, k
        assert np.any(g.numpy() != 0), f"zero gradient for {k}"


@pytest.mark.unit
@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_layout_round_trip(name):
    layout = models.get(name, 10).layout
    v = np.random.default_rng(0).standard_normal(layout.total).astype(np.float32)
    named = layout.unflatten(v)
    assert [k for k in named] == [p.name for p in layout.params]
    np.testing.assert_array_equal(layout.flatten(named), v)
    pushed = layout.unflatten(v[: layout.pushed], group=PUSHED)
    assert set(pushed) == {p.name for p in layout.group(PUSHED)}
    np.testing.assert_array_equal(layout.flatten(pushed, group=PUSHED), v[: layout.pushed])
    predicted = layout.unflatten(v[layout.pushed :], group=PREDICTED)
    first = layout.group(PREDICTED)[0]
    a, b = layout.offset(first.name)
    np.testing.assert_array_equal(predicted[first.name].reshape(-1), v[a:b])
    with pytest.raises(ValueError):
        layout.unflatten(v[:-1])


@pytest.mark.unit
def test_fingerprints_differ_between_models():
    prints = {models.get(n, 10).layout.fingerprint() for n in ALL}
    assert len(prints) == len(ALL)


@pytest.mark.unit
def test_init_deterministic():
    model = models.get("resnet18", 10)
    a, b, c = model.init_vector(5), model.init_vector(5), model.init_vector(6)
    assert a.shape == (model.layout.total,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.cluster
def test_the_cli_describes_a_model_takes_push_and_refuses_unknown_names():
    """`python -m models` four times, in one process (tests/cluster.py's run_in_one: TensorFlow starts once)."""
    from tests.cluster import run_in_one

    r, unknown, done, bad = run_in_one("-m models", ["resnet18"], ["resnet19"], ["lenet5", "--push", "front+head"],
                                       ["lenet5", "--push", "nope"], merge=False)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["model"], d["classes"], d["total"], d["pushed"]) == ("resnet18", 10, 3_139_274, 185_664)
    assert d["fingerprint"] == models.get("resnet18", 10).layout.fingerprint()
    assert len(d["tensors"]) == 42
    assert set(d["tensors"][0]) == {"name", "shape", "size", "group"}
    assert d["tensors"][0] == {"name": "stem/w", "shape": [3, 3, 3, 32], "size": 864, "group": PUSHED}
    assert sum(t["size"] for t in d["tensors"]) == d["total"]

    assert unknown.returncode != 0
    for n in ALL:
        assert n in unknown.stderr

    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["pushed_layers"] == ["conv1", "conv2", "fc3"] and described["pushed"] == 2572 + 850
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "nope" in bad.stderr


# --- the push set is a choice -------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("name", models.NAMES)
def test_push_presets_give_the_right_sizes(name):
    model = models.get(name, 10)
    layers = model.layout.layers()
    front = model.layout.with_push("front")
    assert front.pushed == model.layout.pushed and front.pushed_layers() == model.layout.pushed_layers()
    head = model.layout.with_push("front+head")
    assert head.pushed == model.layout.pushed + layers[-1].size
    assert head.pushed_layers() == model.layout.pushed_layers() + [layers[-1].name]
    everything = model.layout.with_push("all")
    assert everything.pushed == everything.total and everything.predicted == 0
    # The push set is not part of what a flat vector means: snapshots stay usable under any push.
    assert head.fingerprint() == model.layout.fingerprint()


@pytest.mark.unit
def test_push_list_of_layers_and_unknown_names():
    layout = models.get("lenet5", 10).layout
    custom = layout.with_push("conv1, fc3")
    assert custom.pushed_layers() == ["conv1", "fc3"]
    assert custom.pushed == (5 * 5 * 1 * 6 + 6) + (84 * 10 + 10)
    with pytest.raises(ValueError, match="fc9.*conv1, conv2, fc1, fc2, fc3"):
        layout.with_push("conv1,fc9")


@pytest.mark.unit
@pytest.mark.parametrize("choice", ["front", "front+head", "conv2,fc1"])
def test_split_and_join_are_inverse_for_any_push_set(choice):
    import tensorflow as tf

    layout = models.get("lenet5", 10).layout.with_push(choice)
    vector = np.arange(layout.total, dtype=np.float32)
    pushed, predicted = layout.split(vector)
    assert pushed.shape == (layout.pushed,) and predicted.shape == (layout.predicted,)
    # The pushed part is exactly the pushed tensors, in layout order (what a worker flattens).
    named = layout.unflatten(vector)
    np.testing.assert_array_equal(pushed, layout.flatten(named, PUSHED))
    np.testing.assert_array_equal(layout.join(pushed, predicted), vector)
    batch = np.stack([vector, -vector])
    a, b = layout.split(batch)
    np.testing.assert_array_equal(layout.join(a, b), batch)
    # TensorFlow tensors take the same path.
    ta, tb = layout.split(tf.constant(vector))
    np.testing.assert_array_equal(layout.join(ta, tb).numpy(), vector)
    np.testing.assert_array_equal(layout.unflatten(pushed, PUSHED)["conv2/w" if "conv2" in layout.pushed_layers() else "conv1/w"],
                                  named["conv2/w" if "conv2" in layout.pushed_layers() else "conv1/w"])

