"""Session calls that cannot hang forever.

`RunOptions.timeout_in_ms` bounds a blocking queue operation, but a call whose peer vanished at the
transport level may block past it; a watchdog then ends the process with the reason, so no worker
or PS is ever left waiting without end.

A stall leaves evidence: before a process stops because a deadline passed, `evidence` writes the
Python stack of every thread and the last TensorFlow error this process saw (one line, cut) to its
log. A process that stops for a reason a resume can cure (a stalled or aborted step, not a user's
mistake and not a peer that is gone) exits with STALLED, which the local launcher answers by resuming
the run from its last checkpoint.
"""
from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time

import tensorflow as tf

from runtime import tferrors  # noqa: F401  (imported for its side effect too: TensorFlow's error parse made linear)
from runtime.exits import STALLED

GRACE_SECONDS = 30.0  # at most; a short deadline gets 5 s more than itself
WHO = ""  # how this process names itself in the watchdog's last line ("worker 0", "ps"); set by its script
EVIDENCE_LIMIT = 600  # characters of the last TensorFlow error kept for a stall's evidence
_last_error = {"text": "", "when": 0.0, "what": ""}
# Called with the reason before the watchdog ends the process (the PS records the stop with it).
ON_GIVE_UP: list = []


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
    except tf.errors.OpError as e:
        _last_error.update(text=f"{type(e).__name__}: {tferrors.explain(e, EVIDENCE_LIMIT)}", when=time.time(), what=what)
        raise
    except UnicodeDecodeError as e:
        # TensorFlow's Python wrapper decodes an error's message as UTF-8 and fails on one holding other bytes (seen
        # when a peer went away mid-call): the call failed all the same, so it is one, of unknown cause.
        text = f"TensorFlow's error message was not UTF-8 ({e.reason} at byte {e.start})"
        _last_error.update(text=f"UnknownError: {text}", when=time.time(), what=what)
        raise tf.errors.UnknownError(None, None, text) from None
    finally:
        watchdog.cancel()


def last_error() -> str:
    """The last TensorFlow error a call of this process raised, on one line ("" if none)."""
    if not _last_error["text"]:
        return ""
    at = time.strftime("%H:%M:%S", time.localtime(_last_error["when"]))
    return f"{_last_error['text']} (at {at}, {_last_error['what']})"


def evidence() -> None:
    """Into this process's log (stderr), before the line that says why it stops: the last TensorFlow error
    it saw and the Python stack of every thread, so that a stall can be read after the fact."""
    who = f"{WHO}: " if WHO else ""
    print(f"{who}stall evidence: last TensorFlow error: {last_error() or 'none'}\n"
          f"{who}stall evidence: the Python stacks of every thread follow", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()


def _give_up(what: str, seconds: float) -> None:
    who = f"{WHO}: " if WHO else ""
    evidence()
    for note in ON_GIVE_UP:
        try:
            note(f"{what}: no answer within {seconds:.0f} s")
        except Exception:  # noqa: BLE001 (the process is ending: a record that cannot be written must not stop it)
            pass
    print(f"{who}error: {what}: no answer within {seconds:.0f} s; stopping (a resume from the last checkpoint can finish the run)",
          file=sys.stderr, flush=True)
    os._exit(STALLED)
