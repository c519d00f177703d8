"""MP²'s correction: the PS's Adam step on the workers' sparse gradients of the predicted group."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import get
from runtime.methods.base import PSSide, RunInfo
from runtime.methods.correction import Correction
from runtime.methods.mp2_options import CORRECTION_RATIO, MP2Options

pytestmark = pytest.mark.unit

LR = 0.01


def test_one_step_moves_each_sent_entry_by_the_rate_against_the_mean_gradient_and_nothing_else():
    layout = get("lenet5", 10, push="front+head").layout
    size = layout.predicted
    graph = tf.Graph()
    with graph.as_default():
        step = tf.compat.v1.placeholder(tf.int64, [])
        ps = PSSide(layout, tf.Variable(tf.zeros([layout.total])), 2, step, "/cpu:0", gather=None)
        correction = Correction(ps, LR)
        # Worker 0 sends entries 3 and 7, worker 1 entries 7 and 100: the mean gradient there is
        # 0.5 · (2, 6 - 5, 4), all positive (so a reply of either worker's 7th entry alone would show).
        payloads = [[None, tf.constant([2.0, 6.0]), tf.constant([3, 7], tf.int32)],
                    [None, tf.constant([-5.0, 4.0]), tf.constant([7, 100], tf.int32)]]
        before, after = correction.update(payloads)
        full = tf.constant(np.arange(layout.total, dtype=np.float32))
        added = correction.added(full)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.variables_initializer([ps.model, *ps.state, *ps.scratches]))
            first_before, first = session.run([before, after], {step: 0})
            moved = session.run(correction.vector)
            np.testing.assert_array_equal(first_before, np.zeros(size))
            expected = np.zeros(size, np.float32)
            # Adam's first step (t = 1) is lr · sign(g) wherever g ≠ 0 (ε aside), and nothing where g = 0.
            expected[[3, 7, 100]] = [-LR, -LR, -LR]
            np.testing.assert_allclose(first, expected, rtol=1e-5, atol=0)
            np.testing.assert_array_equal(moved, first)
            assert session.run(correction.steps) == 1
            pushed, predicted = layout.split(np.arange(layout.total, dtype=np.float32))
            got_pushed, got_predicted = layout.split(session.run(added))
            np.testing.assert_array_equal(got_pushed, pushed)  # the pushed group is never corrected
            np.testing.assert_allclose(got_predicted, predicted + first, rtol=1e-6)


def test_the_default_ratio_is_on_with_a_full_broadcast_every_step_and_off_otherwise():
    run = RunInfo(workers=4, steps_per_epoch=120, epochs=10, lr=0.003, seed=0)
    assert MP2Options.from_flags({}).for_run(run.steps_per_epoch).correction_ratio == CORRECTION_RATIO > 0
    assert MP2Options.from_flags({"broadcast": "subset"}).for_run(run.steps_per_epoch).correction_ratio == 0
    assert MP2Options.from_flags({"sync_every": 16}).for_run(run.steps_per_epoch).correction_ratio == 0
    assert MP2Options.from_flags({"sync_every": 16, "correction_ratio": 0.01}).for_run(run.steps_per_epoch).correction_ratio == 0.01
    with pytest.raises(ValueError, match="--broadcast subset: the workers would predict without the PS's correction"):
        MP2Options.from_flags({"broadcast": "subset", "correction_ratio": 0.02}).for_run(run.steps_per_epoch).check()
    MP2Options.from_flags({"broadcast": "subset", "correction_ratio": 0.0}).for_run(run.steps_per_epoch).check()
