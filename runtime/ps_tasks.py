"""PS tasks 1.. (`--ps_hosts a,b,…`): each hosts its shard of the model; task 0 drives the run.

A PS task other than 0 runs no step of its own: its server holds its shard's variables and queues, and task 0's
session runs the shard's part of every exchange there (runtime/ps.py), so a shard's bytes go between the workers
and its task only. The task checks in with task 0 like a worker does (its RunConfig, refused with the
differences by name), then waits until task 0 says the run ended (ps_notice/k), or until task 0 is gone.

    python mp2_ps.py --ps_hosts A,B --worker_hosts ... --task_index 1 <the PS's flags>
"""
from __future__ import annotations

import json
import re
import secrets
import time
from typing import Callable

import tensorflow as tf

from runtime import cluster, deadline, tferrors
from runtime.config import RunConfig
from runtime.exits import STALLED
from runtime.ps import wait_until_read
from runtime.wire import Wire, ps_hello_queue, ps_notice_queue, ps_welcome_queue

POLL_SECONDS = 5.0
NOTICE_GRACE = 10.0  # seconds task 0 waits for the other PS tasks to read that the run ended


class ShardTasks:
    """Task 0's view of the other PS tasks: admit them, name one that is gone, tell them when the run ends."""

    def __init__(self, session: tf.compat.v1.Session, wire: Wire, addresses: tuple[str, ...]) -> None:
        self.session, self.wire, self.addresses = session, wire, addresses
        self._hello = wire.ps_hello.dequeue()
        self._text = tf.compat.v1.placeholder(tf.string, [])
        self._notify = [q.enqueue([self._text]) for q in wire.ps_notice]
        self._unread = [q.size() for q in wire.ps_notice]
        self._verdicts: dict[tuple[int, str], tf.Operation] = {}

    def admit(self, config: RunConfig, timeout: float, log: Callable[[str], None] = print) -> None:
        """Wait until every PS task 1.. said hello with task 0's configuration; one with other flags is refused
        with the differences, and task 0 keeps waiting for one with the right flags until `timeout`."""
        waiting = set(range(1, len(self.addresses)))
        refused: dict[int, str] = {}
        end = time.monotonic() + timeout
        while waiting:
            try:
                task, text = deadline.run(self.session, self._hello, seconds=max(0.001, end - time.monotonic()),
                                          what="waiting for the PS tasks")
            except tf.errors.DeadlineExceededError:
                why = "; ".join(f"PS task {k} was refused ({refused[k]})" if k in refused else
                                f"PS task {k} at {self.addresses[k]} did not check in" for k in sorted(waiting))
                raise ValueError(f"{why} within {timeout:.0f} s: start every PS task with task 0's flags "
                                 f"(mp2_ps.py --task_index K)") from None
            try:
                hello = json.loads(text.decode())
                task, nonce = int(task), str(hello["nonce"])
            except (ValueError, KeyError, TypeError):
                log(f"ignored a check-in from PS task {task} that is not from this version of mp2_ps.py")
                continue
            problem = ""
            if task not in waiting:
                problem = f"PS task {task} has already checked in, or is not 1..{len(self.addresses) - 1}"
            else:
                diffs = config.differences(RunConfig.from_json(hello["config"]), f"PS task {task}", "PS task 0")
                problem = "; ".join(diffs)
            self._send_verdict(task, nonce, {"status": "refused", "reason": problem} if problem else {"status": "ok"})
            if problem:
                log(f"refused PS task {task}: {problem}")
                refused[task] = problem
                continue
            waiting.discard(task)
            log(f"PS task {task} at {self.addresses[task]} checked in")

    def _send_verdict(self, task: int, nonce: str, verdict: dict) -> None:
        key = (task, nonce)
        if key not in self._verdicts:
            self._verdicts[key] = ps_welcome_queue(task, nonce).enqueue([self._text])
        deadline.run(self.session, self._verdicts[key], {self._text: json.dumps(verdict)}, seconds=30,
                     what=f"answering PS task {task}")

    def lost(self, error: str = "") -> str:
        """The PS task that is gone ("PS task K at ADDRESS stopped answering"), or "": from a TensorFlow error's
        text when it names one, else by trying each task's port."""
        named = {int(k) for k in re.findall(r"/job:ps/replica:0/task:(\d+)", error)} - {0}
        gone = cluster.gone_ps_tasks(self.addresses, named or None)
        return f"PS task {gone[0]} at {self.addresses[gone[0]]} stopped answering (it died or was stopped; see its log)" \
            if gone else ""

    def release(self, reason: str = "", resumable: bool = False) -> None:
        """Tell every PS task 1.. that the run ended ("" : it finished), so each exits with the matching code."""
        text = json.dumps({"reason": reason, "resumable": resumable})
        for notify in self._notify[1:]:
            try:
                deadline.run(self.session, notify, {self._text: text}, seconds=2, what="notifying the PS tasks")
            except tf.errors.OpError:
                pass  # already told
        # The notices live in this process: stay until each task alive has read its own (a dead one never will).
        gone = cluster.gone_ps_tasks(self.addresses)
        readers = [size for k, size in enumerate(self._unread) if k > 0 and k not in gone]
        wait_until_read(self.session, readers, NOTICE_GRACE)
        if readers:
            time.sleep(0.5)  # a notice dequeued is still on its way to its task


def serve_shard(session: tf.compat.v1.Session, task: int, config: RunConfig, addresses: tuple[str, ...],
                timeout: float, log: Callable[[str], None], error: Callable[[str], None]) -> int:
    """A PS task's life after its server started: check in with task 0, then hold the shard until the run ends.
    Returns the exit code: 0 when the run finished, STALLED when task 0 stopped it for a resume, else 1."""
    nonce = secrets.token_hex(8)
    verdict_q = ps_welcome_queue(task, nonce).dequeue()
    hello = ps_hello_queue(len(addresses)).enqueue([tf.constant(task, tf.int32),
                                                    tf.constant(json.dumps({"config": config.to_json(), "nonce": nonce}))])
    notice = ps_notice_queue(task).dequeue()
    try:
        deadline.run(session, hello, seconds=timeout, what="checking in with PS task 0")
        verdict = json.loads(deadline.run(session, verdict_q, seconds=timeout, what="waiting for PS task 0's answer"))
    except tf.errors.OpError as e:
        error(f"error: PS task 0 at {addresses[0]} did not answer ({type(e).__name__}: {tferrors.explain(e)}); start it, "
              f"or check --ps_hosts")
        return 1
    if verdict["status"] != "ok":
        error(f"error: PS task 0 refused this task: {verdict['reason']} — start it with task 0's flags")
        return 1
    log(f"checked in with PS task 0 at {addresses[0]}; holding this task's shard until the run ends")
    while True:
        try:
            ended = json.loads(deadline.run(session, notice, seconds=POLL_SECONDS, what="holding the shard"))
        except tf.errors.DeadlineExceededError:
            if cluster.reachable(addresses[0]):
                continue
            error(f"error: PS task 0 at {addresses[0]} is gone; stopping (its log says why)")
            return 1
        except tf.errors.OpError as e:
            error(f"error: lost PS task 0 at {addresses[0]} ({type(e).__name__}); stopping (its log says why)")
            return 1
        if not ended["reason"]:
            log("the run finished")
            return 0
        error(f"error: PS task 0 stopped the run: {ended['reason']}")
        return STALLED if ended["resumable"] else 1


def driving_session(spec: cluster.Cluster, threads: int, timeout: float) -> tf.compat.v1.Session:
    """PS task 0's server and its session, made once every other PS task's port is up: a session on a task that is
    not up yet would wait without end."""
    server = cluster.start_server(spec, "ps", 0, threads)
    for k, address in enumerate(spec.ps[1:], 1):
        cluster.wait_for_port(address, timeout, f"PS task {k}")
    return cluster.session(server, "ps", 0, threads)


def shard_task(spec: cluster.Cluster, task: int, config: RunConfig, threads: int, timeout: float,
               log: Callable[[str], None], error: Callable[[str], None]) -> int:
    """mp2_ps.py --task_index K (K ≥ 1): start this task's server, check in with task 0, hold the shard; the exit code."""
    try:
        server = cluster.start_server(spec, "ps", task, threads)
        cluster.wait_for_port(spec.ps[0], timeout, "PS task 0")
    except cluster.ClusterError as e:
        error(f"error: {e}")
        return 1
    tf.compat.v1.disable_eager_execution()
    session = cluster.session(server, "ps", task, threads)
    log(f"PS task {task} listening on {spec.ps[task]}; checking in with PS task 0 at {spec.ps[0]}")
    return serve_shard(session, task, config, spec.ps, timeout, log, error)
