"""Injected faults, for the tests of a worker's recovery from an aborted call (never set in a real run).

TensorFlow's runtime may answer a call with Aborted, and whether the call took effect is then
unknown. The recovery (runtime/worker.py: ask, then resend or read back) is tested by making a
worker's own call fail at chosen steps, the two ways such a call can fail:

    MP2_INJECT_ABORT="0/3/push-lost,1/5/push-landed,0/7/pull-waiting,1/9/pull-applied"

worker/step(1-based)/kind: `push-lost` fails before the payload leaves, `push-landed` after it reached
the PS; `pull-waiting` fails before the reply is taken (it may not have been sent yet), `pull-applied`
after it was applied. `push-twice` and `pull-twice` fail as `push-landed` and `pull-waiting` do, with
the words of a call gRPC delivered twice (the PS's server refuses the second copy). `report-lost` and
`report-twice` fail the report of the epoch numbered in place of the step, before it is sent and after it
arrived (with the words of a call delivered twice). `ps/S/exchange-twice` refuses the PS's own exchange of step S the same way. `train-twice` refuses the
training run of the step before it runs, with those words (a local call whose request id collided).
`push-hang` makes the push a session run that
never returns (it waits on a queue nothing fills) until its deadline passes, as a step whose partition
on the PS never answers does (docs/reliability.md: a request id that collides). Each fires once in a process; the
local launcher's resumed attempts run without them, unless MP2_INJECT_EVERY_ATTEMPT=1.
"""
from __future__ import annotations

import os

import tensorflow as tf

ENV = "MP2_INJECT_ABORT"
KINDS = ("push-lost", "push-landed", "pull-waiting", "pull-applied", "push-twice", "pull-twice", "report-lost",
         "report-twice", "push-hang", "train-twice", "exchange-twice")
PS = -1  # the worker field "ps" names the PS
DUPLICATE_WORDS = "The same RunGraph (Worker) request was received twice."  # TensorFlow's, on a retried call


def _planned() -> set[tuple[int, int, str]]:
    planned = set()
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        worker, step, kind = item.split("/")
        if kind not in KINDS:
            raise ValueError(f"{ENV}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
        planned.add((PS if worker == "ps" else int(worker), int(step), kind))
    return planned


_PLANNED = _planned()


def _fire(worker: int, step: int, *kinds: str) -> None:
    for kind in kinds:
        key = (worker, step + 1, kind)
        if key in _PLANNED:
            _PLANNED.discard(key)
            words = DUPLICATE_WORDS if kind.endswith("-twice") else ""
            raise tf.errors.AbortedError(None, None, f"Graph execution error:\n\n{words} injected fault ({ENV}): {kind}")


def before_send(worker: int, step: int) -> None:
    _fire(worker, step, "push-lost")


def before_train(worker: int, step: int) -> None:
    _fire(worker, step, "train-twice")


def before_exchange(step: int) -> None:
    _fire(PS, step, "exchange-twice")


def hangs(worker: int, step: int) -> tf.Operation | None:
    """An op whose run blocks until its deadline, if a hang is planned for this push; else None."""
    key = (worker, step + 1, "push-hang")
    if key not in _PLANNED:
        return None
    _PLANNED.discard(key)
    with tf.device(f"/job:worker/task:{worker}"):
        return tf.queue.FIFOQueue(1, [tf.int32], name="injected_hang").dequeue()


def after_send(worker: int, step: int) -> None:
    _fire(worker, step, "push-landed", "push-twice")


def before_pull(worker: int, step: int) -> None:
    _fire(worker, step, "pull-waiting", "pull-twice")


def after_pull(worker: int, step: int) -> None:
    _fire(worker, step, "pull-applied")


def before_report(worker: int, record: dict) -> None:
    if "epoch" in record:
        _fire(worker, record["epoch"] - 1, "report-lost")


def after_report(worker: int, record: dict) -> None:
    if "epoch" in record:
        _fire(worker, record["epoch"] - 1, "report-twice")
