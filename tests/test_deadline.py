"""runtime/deadline.run turns a TensorFlow error whose message is not UTF-8 (its Python wrapper fails to decode it)
into a tf.errors.UnknownError, so the callers' handling of failed calls (one line, the peers told) applies."""
from __future__ import annotations

import pytest
import tensorflow as tf

from runtime import deadline

pytestmark = pytest.mark.unit


class GarbledSession:
    def run(self, fetches, feed_dict=None, options=None):
        raise UnicodeDecodeError("utf-8", b"\xf6", 0, 1, "invalid start byte")


def test_an_undecodable_error_message_is_an_op_error():
    with pytest.raises(tf.errors.UnknownError, match="not UTF-8 .invalid start byte at byte 0."):
        deadline.run(GarbledSession(), [], seconds=5, what="a pull")
    assert "UnknownError" in deadline.last_error()
