"""The PS's end of the wire: admitting workers, the per-step barrier, reports, and aborting."""
from __future__ import annotations

import json
import time

import numpy as np
import tensorflow as tf

from runtime import deadline
from runtime.config import RunConfig
from runtime.methods import Method
from runtime.wire import Wire, welcome_queue


NOTICE_GRACE = 5.0  # seconds the PS waits for workers to read why it stopped the run


class WorkerFailed(Exception):
    """A worker did not do its part in time; the message names it."""


class PSLink:
    def __init__(self, session: tf.compat.v1.Session, wire: Wire, method: Method) -> None:
        self.session, self.wire = session, wire
        self._hello = wire.hello.dequeue()
        self._verdict = tf.compat.v1.placeholder(tf.string, [])
        self._model = tf.compat.v1.placeholder(tf.float32, [None])
        self._start = tf.compat.v1.placeholder(tf.int64, [])
        self._welcome = {i: q.enqueue([self._verdict, self._model, self._start]) for i, q in enumerate(wire.welcome)}
        self._gather = [q.dequeue() for q in wire.up]
        self._reply = [tf.compat.v1.placeholder(d, None) for d in method.down_dtypes]
        self._broadcast = [q.enqueue(self._reply) for q in wire.down]
        self._report = [q.dequeue() for q in wire.report]
        self._reason = tf.compat.v1.placeholder(tf.string, [])
        self._notify = [q.enqueue([self._reason]) for q in wire.notice]
        self._close = [q.close(cancel_pending_enqueues=True) for q in wire.down + wire.welcome]
        self._unread_notices = tf.add_n([q.size() for q in wire.notice])

    def admit(self, config: RunConfig, model: np.ndarray, start_step: int, timeout: float, log=print) -> None:
        """Wait until every worker said hello with the PS's configuration, then send each the model.

        A worker with other flags is refused at once with the differences; the PS keeps waiting
        for a worker with the right flags at that index until the timeout.
        """
        admitted: set[int] = set()
        end = time.monotonic() + timeout
        while len(admitted) < self.wire.workers:
            left = end - time.monotonic()
            missing = sorted(set(range(self.wire.workers)) - admitted)
            try:
                if left <= 0:
                    raise tf.errors.DeadlineExceededError(None, None, "")
                index, text = deadline.run(self.session, self._hello, seconds=left, what="waiting for workers")
            except tf.errors.DeadlineExceededError:
                raise WorkerFailed(
                    f"worker(s) {', '.join(map(str, missing))} did not connect within {timeout:.0f} s "
                    f"(start them, check --ps_hosts on their side, or raise --connect-timeout)"
                ) from None
            index = int(index)
            problems = self._check(config, index, text.decode(), admitted)
            if problems:
                log(f"refused worker {index}: {problems}")
                self._send_welcome(index, {"status": "refused", "reason": problems}, np.zeros(0, np.float32), 0)
                continue
            admitted.add(index)
            log(f"worker {index} joined ({len(admitted)}/{self.wire.workers})")
        for index in range(self.wire.workers):
            self._send_welcome(index, {"status": "ok"}, model, start_step)

    def _check(self, config: RunConfig, index: int, text: str, admitted: set[int]) -> str:
        if not 0 <= index < self.wire.workers:
            return f"task index {index} is outside 0..{self.wire.workers - 1}"
        if index in admitted:
            return f"worker {index} has already joined (two workers started with --task_index {index}?)"
        try:
            theirs = RunConfig.from_json(text)
        except (ValueError, TypeError) as e:
            return f"unreadable configuration ({e})"
        diffs = config.differences(theirs)
        return "; ".join(diffs) + " — start it with the PS's flags" if diffs else ""

    def _send_welcome(self, index: int, verdict: dict, model: np.ndarray, start: int) -> None:
        if index not in self._welcome:  # a worker that believes in a larger cluster: refuse it too
            self._welcome[index] = welcome_queue(index).enqueue([self._verdict, self._model, self._start])
        feed = {self._verdict: json.dumps(verdict), self._model: model, self._start: start}
        deadline.run(self.session, self._welcome[index], feed, seconds=30, what=f"welcoming worker {index}")

    def gather(self, timeout: float) -> list[list[np.ndarray]]:
        """One payload from every worker, each awaited with its own deadline (the step barrier)."""
        payloads = []
        end = time.monotonic() + timeout
        for index, dequeue in enumerate(self._gather):
            try:
                left = max(0.001, end - time.monotonic())
                got = deadline.run(self.session, dequeue, seconds=left, what=f"waiting for worker {index}")
            except tf.errors.DeadlineExceededError:
                raise WorkerFailed(f"worker {index} sent nothing for {timeout:.0f} s (it died or hangs; see its log)") from None
            payloads.append(got if isinstance(got, list) else [got])
        return payloads

    def broadcast(self, reply: list[np.ndarray]) -> None:
        feed = dict(zip(self._reply, reply))
        deadline.run(self.session, self._broadcast, feed, seconds=60, what="sending the reply")

    def reports(self, timeout: float) -> list[dict]:
        """One report from every worker, in worker order (epoch metrics, or the final "done")."""
        got = []
        end = time.monotonic() + timeout
        for index, dequeue in enumerate(self._report):
            try:
                text = deadline.run(self.session, dequeue, seconds=max(0.001, end - time.monotonic()), what="waiting for reports")
            except tf.errors.DeadlineExceededError:
                raise WorkerFailed(f"worker {index} sent no report for {timeout:.0f} s (it died or hangs; see its log)") from None
            got.append(json.loads(text.decode()))
        return got

    def abort(self, reason: str) -> None:
        """Tell every worker why, then close their reply queues so a blocked worker wakes at once."""
        for notify in self._notify:
            try:
                deadline.run(self.session, notify, {self._reason: reason}, seconds=2, what="notifying workers")
            except tf.errors.OpError:
                pass  # a notice is already waiting there
        self.session.run(self._close)
        # The notices live in this process: stay until the workers have read them (a dead one never
        # will, hence the bound), or they would only learn that the PS is gone, not why.
        end = time.monotonic() + NOTICE_GRACE
        while time.monotonic() < end and self.session.run(self._unread_notices) > 0:
            time.sleep(0.1)
