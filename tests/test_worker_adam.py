"""The workers' local Adam: a group trained only on some steps keeps a clock of its own."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from runtime.methods.base import WorkerSide

pytestmark = pytest.mark.unit

LR, B1, B2 = 0.01, 0.9, 0.999


def _steps(clock: str, skipped: int) -> float:
    """One step of both groups, `skipped` steps of group a alone, then both again after the momentum
    of b is forgotten (MP²'s full, partial, full). Returns how far that last step moved b."""
    graph = tf.Graph()
    with graph.as_default():
        a, b = tf.Variable([1.0]), tf.Variable([1.0])
        loss = tf.reduce_sum(3.0 * a) + tf.reduce_sum(2.0 * b)  # constant gradients: 3 and 2
        w = WorkerSide(local=None, loss=loss, lr=tf.constant(LR), step=None, device="/cpu:0")
        grads = tf.gradients(loss, [a, b])
        full = tf.group(w.adam([a], grads[:1]), w.adam([b], grads[1:], clock=clock))
        partial = w.adam([a])
        forget = w.forget_momentum([b])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.variables_initializer([a, b, *w.state]))
            session.run(full)
            for _ in range(skipped):
                session.run(partial)
            session.run(forget)
            before = session.run(b)
            session.run(full)
            return float((before - session.run(b))[0])


def test_a_group_on_its_own_clock_steps_as_adam_on_its_own_updates():
    # b's second update, its first moment just reset: m = 0.1 g, v = (0.999 * 0.001 + 0.001) g^2, both
    # corrected for 2 steps, whatever a did meanwhile.
    m_hat = (1 - B1) / (1 - B1 ** 2)
    v_hat = ((1 - B2) * B2 + (1 - B2)) / (1 - B2 ** 2)
    expected = LR * m_hat / np.sqrt(v_hat)
    assert _steps("predicted", skipped=200) == pytest.approx(expected, rel=1e-3)
    assert _steps("predicted", skipped=0) == pytest.approx(expected, rel=1e-3)


def test_on_the_shared_clock_skipped_steps_would_inflate_the_step():
    # What the own clock avoids: corrected for 202 steps, v reads as 10x smaller than it is.
    assert _steps("shared", skipped=200) > 1.5 * _steps("predicted", skipped=200)


def test_the_local_adam_is_the_projects_adam_and_its_state_is_worker_state():
    """WorkerSide.adam is helpers/optim.py's Adam with the model's ε: its first steps are the textbook's, and
    its t, m and v are the worker's state (what the worker's state file saves and a resume restores)."""
    from helpers.optim import MODEL_EPSILON
    from runtime.methods.base import restore_state, state_arrays

    def run(steps: int, saved: dict | None):
        graph = tf.Graph()
        with graph.as_default():
            a = tf.Variable([1.0, -2.0])
            loss = tf.reduce_sum(a * a * tf.constant([3.0, 1e-5]))
            w = WorkerSide(local=None, loss=loss, lr=tf.constant(LR), step=None, device="/cpu:0")
            train = w.adam([a])
            assert len(w.state) == 3  # t, m, v
            with tf.compat.v1.Session() as session:
                session.run(tf.compat.v1.variables_initializer([a, *w.state]))
                if saved is not None:
                    a.load(saved["a"], session)
                    restore_state(session, w.state, saved, "the test's state")
                for _ in range(steps):
                    session.run(train)
                return {"a": session.run(a), **state_arrays(session, w.state)}

    x, m, v, model = np.array([1.0, -2.0]), 0.0, 0.0, []
    for t in range(1, 5):
        g = 2 * x * np.array([3.0, 1e-5])
        m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
        x = x - LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m / (np.sqrt(v) + MODEL_EPSILON)
        model.append(x)
    straight = run(4, None)
    np.testing.assert_allclose(straight["a"], model[-1], rtol=1e-5)
    resumed = run(2, run(2, None))
    assert [int(a) for k, a in resumed.items() if k.endswith("/t")] == [4]
    np.testing.assert_array_equal(resumed["a"], straight["a"])
