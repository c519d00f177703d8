"""What benchmarks/ps_step.py adds to the runtime's PS and worker graphs: timing, and nothing else.

    TimedPSGraph   runtime.ps.PSGraph whose exchanges are timed from the moment every worker's payload is on the
                   PS (polled) to the run's end (the replies enqueued), through PSGraph.execute; one step traced
                   op by op
    TimedWorker    what WorkerLoop drives in place of a runtime.worker.WorkerGraph: the same graph, each
                   exchanging step timed from the start of its push to its reply applied, its bytes counted

Both leave the loops (runtime/ps_loop.py, runtime/worker_loop.py) and the exchange as they are.
"""
from __future__ import annotations

import time
from typing import Callable

import tensorflow as tf

from runtime.cluster import PS_DEVICE
from runtime.ps import PSGraph, WorkerFailed
from runtime.worker import Pulled, WorkerGraph

POLL_SECONDS = 0.0005  # between looks at the queues' sizes


class TimedPSGraph(PSGraph):
    """PSGraph with every exchanging step's PS time in `seconds` (and its phase's name in `phases`), in order.

    `traced`: the index, among the exchanging steps, of the step traced op by op (its RunMetadata in `traces`);
    `alive`: whether every worker process still runs (a poll that waits on a dead one ends the run)."""

    def __init__(self, *args, traced: int, alive: Callable[[], bool], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.traced, self.alive = traced, alive
        self.seconds: list[float] = []
        self.phases: list[str] = []
        self.traces: list[tf.compat.v1.RunMetadata] = []
        self._tracing = False
        with tf.device(PS_DEVICE):
            self.all_present = tf.reduce_all(tf.stack([q.size() for q in self.wire.up]) >= 1)

    def run_step(self, session: tf.compat.v1.Session, step: int, phase: int, next_phase: int, timeout: float) -> None:
        self._tracing = len(self.seconds) == self.traced
        self.seconds.append(0.0)
        self.phases.append(self.method.phase_name(phase))
        super().run_step(session, step, phase, next_phase, timeout)

    def add(self, seconds: float) -> None:
        """Count `seconds` of PS work (the method's after_step) towards the last step."""
        self.seconds[-1] += seconds

    def execute(self, session: tf.compat.v1.Session, op: tf.Operation, feed: dict, seconds: float, what: str) -> None:
        end = time.monotonic() + seconds
        while not session.run(self.all_present):
            if not self.alive():
                raise WorkerFailed(f"{what}: a worker process ended before pushing (see the workers' logs)")
            if time.monotonic() > end:  # PSGraph names the workers whose payload is missing
                raise tf.errors.DeadlineExceededError(None, None, f"{what}: waiting for every payload")
            time.sleep(POLL_SECONDS)
        started = time.perf_counter()
        if self._tracing:
            self.traces.append(tf.compat.v1.RunMetadata())
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE,
                                              timeout_in_ms=int(seconds * 1000))
            session.run(op, feed, options=options, run_metadata=self.traces[-1])
        else:
            super().execute(session, op, feed, seconds, what)
        self.seconds[-1] += time.perf_counter() - started


class TimedWorker:
    """A WorkerGraph as WorkerLoop sees it, with each exchanging step's seconds (push start to reply applied) and
    bytes each way in `step_seconds`, `bytes_up`, `bytes_down`, in order; every other call goes to the graph."""

    def __init__(self, graph: WorkerGraph) -> None:
        self.graph = graph
        self.step_seconds: list[float] = []
        self.bytes_up: list[int] = []
        self.bytes_down: list[int] = []
        self._started, self._sent = 0.0, 0

    def __getattr__(self, name: str):
        return getattr(self.graph, name)

    def push(self, *args, **kwargs) -> tuple[float, float, int]:
        self._started = time.perf_counter()
        loss, accuracy, self._sent = self.graph.push(*args, **kwargs)
        return loss, accuracy, self._sent

    def pull(self, *args, **kwargs) -> Pulled:
        pulled = self.graph.pull(*args, **kwargs)
        self.step_seconds.append(time.perf_counter() - self._started)
        self.bytes_up.append(self._sent + pulled.sent)
        self.bytes_down.append(pulled.received)
        return pulled
