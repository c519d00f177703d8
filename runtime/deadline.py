"""Session calls that cannot hang forever.

`RunOptions.timeout_in_ms` bounds a blocking queue operation, but a call whose peer vanished at the
transport level may block past it; a watchdog then ends the process with the reason, so no worker
or PS is ever left waiting without end.
"""
from __future__ import annotations

import os
import sys
import threading

import tensorflow as tf

GRACE_SECONDS = 30.0  # at most; a short deadline gets 5 s more than itself
WHO = ""  # how this process names itself in the watchdog's last line ("worker 0", "ps"); set by its script


def grace(seconds: float) -> float:
    """How long past its own timeout a call may run before the watchdog gives up on the peer."""
    return min(GRACE_SECONDS, 5.0 + seconds)


def run(session: tf.compat.v1.Session, fetches, feed_dict=None, *, seconds: float, what: str):
    """session.run with a deadline; raises tf.errors.DeadlineExceededError when it passes."""
    options = tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(seconds * 1000)))
    limit = seconds + grace(seconds)
    watchdog = threading.Timer(limit, _give_up, args=(what, limit))
    watchdog.daemon = True
    watchdog.start()
    try:
        return session.run(fetches, feed_dict, options=options)
    finally:
        watchdog.cancel()


def _give_up(what: str, seconds: float) -> None:
    who = f"{WHO}: " if WHO else ""
    print(f"{who}error: {what}: no answer within {seconds:.0f} s; stopping", file=sys.stderr, flush=True)
    os._exit(3)
