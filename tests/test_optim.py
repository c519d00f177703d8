"""The project's one Adam (helpers/optim.py): the textbook update, over named variables (ε 1e-7, the predictor's)
and over a flat vector (ε 1e-8, the model's, as the workers' own Adam)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers.optim import MODEL_EPSILON, PREDICTOR_EPSILON, Adam, FlatOptimizer

pytestmark = pytest.mark.unit

START = np.array([0.5, -1.0, 2.0, 0.25], np.float32)


def gradient(t: int) -> np.ndarray:
    # The last entry is small enough that ε decides its step: ε 1e-7 moves it about a tenth as far as
    # ε 1e-8, so the reference below tells the two apart.
    return np.array([1.0, -2.0, 0.5, 3e-8]) * t


def textbook(steps: int, lr=lambda t: 0.1, eps: float = PREDICTOR_EPSILON) -> list[np.ndarray]:
    """The model after each of `steps` Adam steps, in float64."""
    x, m, v, out = START.astype(np.float64), 0.0, 0.0, []
    for t in range(1, steps + 1):
        g = gradient(t)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        x = x - lr(t) * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + eps)
        out.append(x)
    return out


def test_the_epsilons_are_the_documented_ones():
    assert (MODEL_EPSILON, PREDICTOR_EPSILON) == (1e-8, 1e-7)
    far = textbook(1, eps=MODEL_EPSILON)[0] - textbook(1, eps=PREDICTOR_EPSILON)[0]
    assert abs(far[3]) > 5e-3  # the reference itself tells the two ε apart (0.25 moves 3 %)


def test_adam_matches_the_textbook_update_and_its_state_round_trips():
    var = tf.Variable(START)
    opt = Adam({"x": var}, lr=0.1)
    for t, want in enumerate(textbook(3), start=1):
        opt.apply([tf.constant(gradient(t), tf.float32)])
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5)
    state = opt.state()
    assert int(state["adam/t"]) == 3
    other = Adam({"x": tf.Variable(START)}, lr=0.1)
    other.load_state(state)
    np.testing.assert_array_equal(other.m[0].numpy(), opt.m[0].numpy())
    np.testing.assert_array_equal(other.v[0].numpy(), opt.v[0].numpy())
    assert int(other.t.numpy()) == 3


def test_adam_state_refuses_a_misshapen_entry():
    opt = Adam({"x": tf.Variable(START)})
    state = opt.state()
    state["adam/m/x"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="adam/m/x has shape"):
        Adam({"x": tf.Variable(START)}).load_state(state)


def test_adam_warmup_scales_the_learning_rate_linearly():
    var = tf.Variable(START)
    opt = Adam({"x": var}, lr=0.1, warmup_steps=4)
    for t, want in enumerate(textbook(6, lr=lambda t: 0.1 * min(1.0, t / 4)), start=1):  # through it and past
        opt.apply([tf.constant(gradient(t), tf.float32)])
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5)


def test_flat_optimizer_takes_the_same_step_bit_for_bit():
    """A worker's FlatOptimizer and the PS's agree exactly only if both run the same update: here the flat
    form against Adam over a variable, the same kernel on the same values."""
    slots: dict[str, tf.Variable] = {}

    def make(name: str, value) -> tf.Variable:
        slots[name] = tf.Variable(value)
        return slots[name]

    flat = FlatOptimizer("adam", START.size, make, make)
    assert "adam_x" in slots and "adam_m" in slots and "adam_v" in slots
    var = tf.Variable(START)
    named = Adam({"x": var}, lr=0.1, epsilon=MODEL_EPSILON)
    model = tf.constant(START)
    for step, want in enumerate(textbook(4, eps=MODEL_EPSILON)):
        g = tf.constant(gradient(step + 1), tf.float32)
        model, _ = flat.apply(model, g, tf.constant(0.1), tf.constant(step, tf.int64))
        named.apply([g])
        np.testing.assert_array_equal(model.numpy(), var.numpy())
        np.testing.assert_allclose(model.numpy(), want, rtol=1e-5)


def test_flat_sgd_and_unknown_kinds():
    flat = FlatOptimizer("sgd", 4, None, None)
    new, slots = flat.apply(tf.constant(START), tf.ones([4]), tf.constant(0.5), tf.constant(0, tf.int64))
    np.testing.assert_allclose(new.numpy(), START - 0.5)
    assert slots == []
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        FlatOptimizer("lamb", 4, None, None)


def test_adam_in_a_graph_matches_the_textbook_and_the_eager_form_bit_for_bit():
    """The form the workers and sync's PS run (a TensorFlow 1 graph, state made by the caller): the same
    steps as the eager form, and its t, m, v are the variables `make` made, in that order."""
    made: list[str] = []
    graph = tf.Graph()
    with graph.as_default():
        var = tf.Variable(START)
        grad = tf.compat.v1.placeholder(tf.float32, [4])

        def make(name: str, value: tf.Tensor) -> tf.Variable:
            made.append(name)
            return tf.Variable(value, trainable=False)

        opt = Adam(lr=tf.constant(0.1), epsilon=MODEL_EPSILON, make=make)
        step = opt.apply([grad], [var])
        assert opt.first_moment(var) is opt.m[0] and made == ["t", f"m/{var.op.name}", f"v/{var.op.name}"]
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            graph_steps = []
            for t in range(1, 5):
                session.run(step, {grad: gradient(t).astype(np.float32)})
                graph_steps.append(session.run(var))
            assert session.run(opt.t) == 4
    eager_var = tf.Variable(START)
    eager = Adam({"x": eager_var}, lr=0.1, epsilon=MODEL_EPSILON)
    for t, (got, want) in enumerate(zip(graph_steps, textbook(4, eps=MODEL_EPSILON)), start=1):
        eager.apply([tf.constant(gradient(t), tf.float32)])
        np.testing.assert_array_equal(got, eager_var.numpy())
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_adam_resumed_from_its_variables_continues_bit_for_bit():
    """What a worker's or the PS's checkpoint does: save t, m, v after 3 steps, load them into a fresh graph,
    take 3 more; the model equals 6 uninterrupted steps bit for bit (a t not restored would not)."""

    def run(steps: range, start: np.ndarray, state: list[np.ndarray] | None):
        graph = tf.Graph()
        with graph.as_default():
            made: list[tf.Variable] = []
            var = tf.Variable(start)
            grad = tf.compat.v1.placeholder(tf.float32, [4])
            opt = Adam(lr=0.1, epsilon=MODEL_EPSILON,
                       make=lambda name, value: made.append(tf.Variable(value, trainable=False)) or made[-1])
            step = opt.apply([grad], [var])
            with tf.compat.v1.Session() as session:
                session.run(tf.compat.v1.global_variables_initializer())
                for v, value in zip(made, state or []):
                    v.load(value, session)
                for t in steps:
                    session.run(step, {grad: gradient(t).astype(np.float32)})
                return session.run(var), session.run(made)

    straight, _ = run(range(1, 7), START, None)
    half, state = run(range(1, 4), START, None)
    assert int(state[0]) == 3
    resumed, _ = run(range(4, 7), half, state)
    np.testing.assert_array_equal(resumed, straight)
    fresh_clock, _ = run(range(4, 7), half, [np.int64(0), *state[1:]])
    assert not np.array_equal(fresh_clock, straight)


def test_adam_refuses_gradients_that_do_not_match_the_variables():
    with pytest.raises(ValueError, match="2 gradients for 1 variables"):
        Adam({"x": tf.Variable(START)}).apply([tf.ones([4]), tf.ones([4])])
