"""The PS's mean adds the workers' payloads in worker order, so a run's every bit is repeatable."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from runtime.methods.base import mean, ordered_sum

pytestmark = pytest.mark.unit


def test_the_sum_is_taken_in_list_order_where_another_order_gives_other_bits():
    # In float32 1e8 + 1 rounds to 1e8: ((1e8 + 1) - 1e8) + 1 = 1, where (1e8 - 1e8) + 1 + 1 = 2.
    a, b, c, d = (np.full(1000, x, np.float32) for x in (1e8, 1.0, -1e8, 1.0))
    in_order = ((a + b) + c) + d
    assert not np.array_equal(in_order, ((a + c) + b) + d)  # the order matters for these values
    np.testing.assert_array_equal(ordered_sum([tf.constant(t) for t in (a, b, c, d)]).numpy(), in_order)
    np.testing.assert_array_equal(mean([tf.constant(t) for t in (a, b, c, d)]).numpy(), in_order / np.float32(4))


def test_random_payloads_give_the_ordered_sum_bit_for_bit():
    rng = np.random.default_rng(0)
    payloads = [rng.standard_normal(50_000).astype(np.float32) * 10.0 ** rng.integers(-3, 4) for _ in range(4)]
    expected = ((payloads[0] + payloads[1]) + payloads[2]) + payloads[3]
    np.testing.assert_array_equal(ordered_sum([tf.constant(p) for p in payloads]).numpy(), expected)
