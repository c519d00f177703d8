"""Online MP²'s graph rounds (runtime/methods/rounds.py) in a TensorFlow graph of their own, as the PS runs them."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import data
import models
from runtime.methods.rounds import GraphRounds

pytestmark = pytest.mark.unit

LENET = models.get("lenet5", 10, push="front+head")


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic((28, 28, 1), 10, seed=0)


def snapshots(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    base = LENET.init_vector(0)
    return [LENET.layout.split(base + 0.01 * rng.standard_normal(base.shape).astype(np.float32))[0] for _ in range(n)]


class Rig:
    """GraphRounds in a graph and session of its own; `weights()` reads the trainee."""

    def __init__(self, dataset, first_steps: int = 6, steps: int = 4) -> None:
        self.graph = tf.Graph()
        with self.graph.as_default():
            pool = np.arange(len(dataset.train_y) // 2)
            self.rounds = GraphRounds(LENET, dataset.train_x, dataset.train_y, pool, first_steps=first_steps,
                                      steps=steps, seed=3)
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            self.rounds.build(lambda: self.session, "/cpu:0")
            self.session.run(tf.compat.v1.global_variables_initializer())

    def round(self, number: int, groups: list[np.ndarray]):
        self.rounds.start(0, number, groups)
        result = self.rounds.poll(120)
        assert result is not None and result.ok, result
        return result

    def weights(self) -> dict[str, np.ndarray]:
        return self.session.run(self.rounds.trainee.weight_vars)


def test_a_round_trains_the_trainee_and_returns_its_weights(dataset):
    rig = Rig(dataset)
    before = rig.weights()
    result = rig.round(1, snapshots(5))
    after = rig.weights()
    assert set(result.weights) == set(before) and result.seconds > 0
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # it trained
    for k in after:
        np.testing.assert_array_equal(result.weights[k], after[k])  # and says what it holds


def test_a_round_not_taken_is_forgotten(dataset):
    """After round 1 is accepted, round 3 starts from round 1's state whether or not round 2 ran before it
    (and was not taken): same weights, Adam moments and draws, so the same result, bit for bit (one
    process, one thread, the same ops)."""
    groups = snapshots(5)
    with_rejected, direct = Rig(dataset), Rig(dataset)
    for rig in (with_rejected, direct):
        rig.round(1, groups)
        rig.rounds.accept()
    with_rejected.round(2, groups)  # not accepted
    a, b = with_rejected.round(3, groups).weights, direct.round(3, groups).weights
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_an_accepted_round_is_continued(dataset):
    groups = snapshots(5)
    rig = Rig(dataset)
    first = rig.round(1, groups).weights
    rig.rounds.accept()
    rig.rounds.start(0, 2, groups)
    # The next round starts where the accepted one ended: polling before it is done returns None or
    # its result, never an error, and its result differs from the accepted weights.
    result = rig.rounds.poll(120)
    assert any(not np.array_equal(first[k], result.weights[k]) for k in first)


def test_a_failed_round_reports_why(dataset):
    rig = Rig(dataset)
    bad = [np.full_like(g, np.inf) for g in snapshots(2)]
    rig.rounds.start(0, 1, bad)
    result = rig.rounds.poll(120)
    assert result is not None and not result.ok and "round" in result.why


def test_a_round_takes_all_its_steps_whatever_the_calls_size(dataset, monkeypatch):
    """Steps run in calls of STEPS_PER_CALL (a loop in the graph): calls of 3 over 7 steps (the last one
    short) end where one call of 7 ends, and Adam counted 7 steps."""
    from runtime.methods import rounds

    groups, ends = snapshots(5), []
    for per_call in (3, 50):
        monkeypatch.setattr(rounds, "STEPS_PER_CALL", per_call)
        rig = Rig(dataset, first_steps=7)
        ends.append(rig.round(1, groups).weights)
        assert rig.session.run(rig.rounds.adam.t) == 7
    for k in ends[0]:
        np.testing.assert_array_equal(ends[0][k], ends[1][k])
