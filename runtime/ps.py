"""The PS's end of the wire: admitting workers, the per-step graph, reports, evaluation, aborting.

An exchange is one session run: dequeue every worker's payload, let the method update the global
model (a PS variable) and build its reply, and enqueue the reply with the control word to every
worker. A step is one exchange for most methods, several for some (`PSPhase.then`), none on a local
step. Nothing of the model passes through Python. Each dequeue marks, in a PS variable, the exchange
its worker last delivered, so when the run's deadline passes the PS names exactly the missing workers.
"""
from __future__ import annotations

import json
import re
import time

import numpy as np
import tensorflow as tf

from models import Model
from models.evaluate import in_chunks, predicted_labels
from runtime import deadline, faults, tferrors
from runtime.config import RunConfig
from runtime.methods.base import Method, PSSide, restore_state, state_arrays
from runtime.shards import Shard, partition
from runtime.wire import CONTROL_DTYPE, ShardWire, Wire, as_list, digest, report_of, welcome_queue

NOTICE_GRACE = 15.0  # seconds the PS waits for workers to read why it stopped the run (one may be evaluating)
REFUSED_RETRIES = 3  # times the PS runs an exchange again that its own server refused as a repeated request


class WorkerFailed(Exception):
    """A worker did not do its part in time, or sent something unusable; the message names it, and
    `workers` holds the indices of those that went silent (none will read why the run stopped)."""

    def __init__(self, message: str, workers: tuple[int, ...] = (), mid_run: bool = True) -> None:
        super().__init__(message)
        self.workers = tuple(workers)
        self.mid_run = mid_run  # False: the run never started (a worker did not come or was refused)


class Diverged(Exception):
    """Training produced non-finite values; the message names the step and the worker."""


class PSGraph:
    """The PS's step graph. With several PS tasks (`shards`, runtime/shards.py) the model is one variable per task,
    the method built once per shard on that task, and an exchange runs every task's part at once; task 0 (this
    process) drives them and evaluates."""

    def __init__(self, model: Model, method: Method, wire: Wire, device: str, verify_sync: bool = False,
                 shards: list[Shard] | None = None) -> None:
        self.layout, self.wire, self.method = model.layout, wire, method
        self.shards = shards or partition(self.layout, 1)  # from shards.plan, which refuses a method that cannot shard
        whole = len(self.shards) == 1
        n = wire.workers
        with tf.device(device):
            self.initial = tf.compat.v1.placeholder(tf.float32, [self.layout.total], name="initial_model")
            self.step = tf.compat.v1.placeholder(tf.int64, [], name="global_step")
            self.next_phase = tf.compat.v1.placeholder(tf.int64, [], name="next_phase")
            self.exchange = tf.compat.v1.placeholder(tf.int64, [], name="exchange")  # counts exchanges run
        self._exchanges = 0
        self.refused = 0  # exchanges this PS's own server refused as repeated requests, and ran again
        self.delivered = [v for s in wire.shards for v in s.delivered]  # task by task, worker by worker
        self.parts, self.sides = [], []  # per piece of the model
        for shard, links in zip(self.shards, wire.shards):
            with tf.device(shard.device):
                part = tf.Variable(self.initial if whole else self.initial[shard.start:shard.end],
                                   name="global_model" if whole else f"global_model_t{shard.index}", trainable=False)
            self.parts.append(part)
            self.sides.append(PSSide(shard.layout, part, n, self.step, shard.device,
                                     lambda links=links: self._gather(links)))
        self.methods, built = map(list, zip(*method.build_pieces(self.sides)))  # the method serving each piece
        self.side = self.sides[0]
        with tf.device(device):
            self.model = self.parts[0] if whole else tf.concat([p.read_value() for p in self.parts], 0)
            self.step_ops = {}  # phase -> one op per exchange of its steps
            for phase in built[0]:
                rounds = list(zip(*[[b[phase].reply, *b[phase].then] for b in built]))  # per round: each piece's reply
                self.step_ops[phase] = [self._enqueue(list(r), verify_sync and k == len(rounds) - 1, phase)
                                        for k, r in enumerate(rounds)]
            # Evaluation of the global model, here and nowhere else.
            self.images = tf.compat.v1.placeholder(tf.float32, [None, *model.input_shape], name="test_images")
            self.predictions = predicted_labels(model, self.model, self.images)
        self.init_op = tf.compat.v1.variables_initializer([*self._own_variables(), *self._extra_variables()])

    def _enqueue(self, replies: list[list[tf.Tensor]], with_digest: bool, phase: int) -> tf.Operation:
        """Send each task's reply and the control word to every worker. Every reply announces the next phase; the
        last of a step's also carries the digest of what every side holds equal after it (with --verify-sync: the
        model, or the method's part of it, Method.synced), which workers check: the sum of the pieces' digests,
        each of its part at its place in the whole, so with it every piece's reply waits for every piece's update;
        without it a piece's reply leaves as soon as it is made (--chunks: while later pieces still come in)."""
        check = tf.constant(0, tf.int64)
        if with_digest:
            with tf.control_dependencies([t for r in replies for t in r]):
                synced = [own.synced(phase, part.read_value()) for own, part in zip(self.methods, self.parts)]
                at = [0]
                for s in synced:  # a piece's synced part starts where the pieces' before it end
                    at.append(at[-1] + s.shape[0])
                check = tf.add_n([digest(s, offset) for s, offset in zip(synced, at)])
        control = tf.cast(tf.stack([self.next_phase, check]), CONTROL_DTYPE)
        done = []
        for reply, links in zip(replies, self.wire.shards):
            with tf.device(links.replied.device), tf.control_dependencies([q.enqueue([*reply, control]) for q in links.down]):
                done.append(links.replied.assign(self.exchange).op)
        return tf.group(*done)

    def _own_variables(self) -> list[tf.Variable]:
        """The PS's variables the runtime made: the model, the wire's counters, the method's state."""
        return [*self.parts, *self.wire.counters(), *self._state(), *(v for s in self.sides for v in s.scratches)]

    def _state(self) -> list[tf.Variable]:
        return [v for s in self.sides for v in s.state]

    def _extra_variables(self) -> list[tf.Variable]:
        # Variables a method made itself (e.g. the predictor's weights) are initialised with the rest.
        known = {id(v) for v in self._own_variables()}
        return [v for v in tf.compat.v1.global_variables() if id(v) not in known and "/job:ps" in v.device]

    def _gather(self, links: ShardWire) -> list[list[tf.Tensor]]:
        """Every worker's payload to one PS task for this step (fresh dequeue ops), checked and marked delivered."""
        out = []
        for i, q in enumerate(links.up):
            got = as_list(q.dequeue())
            with tf.control_dependencies(got):
                mark = links.delivered[i].assign(self.exchange)
            # A worker whose training diverged sends NaN or infinity: named here, at once. A sum is
            # non-finite exactly when an element is (or when values near 1e38 overflow it: diverged
            # anyway), and one vectorised reduction is far cheaper than CheckNumerics' scan.
            checks = [tf.debugging.check_numerics(tf.reduce_sum(t), f"non-finite values from worker {i}")
                      for t in got if t.dtype.is_floating]
            with tf.control_dependencies([mark, *checks]):
                got = [tf.identity(t) for t in got]
            out.append(got)
        return out

    # --- state ------------------------------------------------------------------------------------
    def initialise(self, session: tf.compat.v1.Session, vector: np.ndarray, saved: dict[str, np.ndarray] | None = None,
                   where: str = "") -> None:
        session.run(self.init_op, {self.initial: vector})
        if saved is not None:
            restore_state(session, self._state(), saved, where)

    def model_value(self, session: tf.compat.v1.Session) -> np.ndarray:
        return session.run(self.model)

    def state(self, session: tf.compat.v1.Session) -> dict[str, np.ndarray]:
        return state_arrays(session, self._state())

    def evaluate(self, session: tf.compat.v1.Session, images: np.ndarray, batch: int = 500) -> np.ndarray:
        return in_chunks(lambda x: session.run(self.predictions, {self.images: x}), images, batch)

    # --- one step -----------------------------------------------------------------------------------
    def run_step(self, session: tf.compat.v1.Session, step: int, phase: int, next_phase: int, timeout: float) -> None:
        """Every exchange of the step, each one session run with its own deadline."""
        for op in self.step_ops[phase]:
            self._exchanges += 1
            self._run_exchange(session, op, {self.step: step, self.next_phase: next_phase, self.exchange: self._exchanges},
                               step, timeout)

    def execute(self, session: tf.compat.v1.Session, op: tf.Operation, feed: dict, seconds: float, what: str) -> None:
        """One exchange's session run, with its deadline. The hook a benchmark overrides to time exchanges
        (benchmarks/ps_step.py waits until every payload is on the PS, then times this run); the retries and the
        naming of a missing worker around it (`_run_exchange`) stay the runtime's."""
        deadline.run(session, op, feed, seconds=seconds, what=what)

    def _run_exchange(self, session: tf.compat.v1.Session, op: tf.Operation, feed: dict, step: int, timeout: float) -> None:
        try:
            for attempt in range(REFUSED_RETRIES + 1):
                try:
                    faults.before_exchange(step)
                    self.execute(session, op, feed, timeout, f"step {step + 1}")
                    return
                except tf.errors.AbortedError as e:
                    # The exchange runs on the PS alone, and TensorFlow refuses a call whose request id it saw
                    # before (ids can collide: docs/reliability.md) before running any of it: run it again.
                    if not tferrors.delivered_twice(e) or attempt == REFUSED_RETRIES:
                        raise
                    self.refused += 1
        except tf.errors.DeadlineExceededError:
            delivered = session.run(self.delivered)  # task by task, worker by worker
            missing = sorted({k % self.wire.workers for k, s in enumerate(delivered) if s != feed[self.exchange]}) \
                or list(range(self.wire.workers))
            raise WorkerFailed(f"worker {', '.join(map(str, missing))} sent nothing for {timeout:.0f} s at step "
                               f"{step + 1} (it died or hangs; see its log)", tuple(missing)) from None
        except tf.errors.InvalidArgumentError as e:
            found = re.search(r"non-finite values from (worker \d+)", e.message)
            if found:
                raise Diverged(f"training diverged at step {step + 1}: {found.group(1)} sent NaN or infinite "
                               f"values; lower --lr") from None
            raise


def _not_admitted(missing: list[int], refused: dict[int, str], timeout: float) -> str:
    """Why the run could not start: which workers were refused (and why), which never came."""
    parts = [f"worker {i} was refused ({refused[i]}) and no process with the PS's flags came in its place "
             f"within {timeout:.0f} s" for i in missing if i in refused]
    silent = [i for i in missing if i not in refused]
    if silent:
        parts.append(f"worker(s) {', '.join(map(str, silent))} did not connect within {timeout:.0f} s (start them, "
                     f"check --ps_hosts on their side, or raise --connect-timeout)")
    return "; ".join(parts)


# A mean training loss above this is a run gone wrong, not a slow one: cross-entropy of a model that
# guesses uniformly is ln(classes), 2.3 for 10 classes and 4.6 for 100.
LOSS_LIMIT = 1e3


def loss_diverged(reports: list[dict], epoch: int) -> str:
    """Why the workers' epoch reports show a diverged run, or "" (NaN and infinity are caught per step)."""
    bad = [r for r in reports if not r.get("loss", 0.0) <= LOSS_LIMIT]
    if not bad:
        return ""
    worst = max(bad, key=lambda r: r["loss"])
    return (f"training diverged in epoch {epoch}: worker {worst['worker']}'s mean loss is {worst['loss']:.3g} "
            f"(above {LOSS_LIMIT:g}); lower --lr")


def wait_until_read(session: tf.compat.v1.Session, unread: list[tf.Tensor], seconds: float) -> None:
    """Wait, at most `seconds`, until the queues whose sizes are `unread` are empty: the notices this process holds
    have been read (a reader that died never will, hence the bound; a queue that is gone ends the wait)."""
    end = time.monotonic() + seconds
    while unread and time.monotonic() < end:
        try:
            if sum(session.run(unread)) == 0:
                return
        except tf.errors.OpError:
            return
        time.sleep(0.1)


class PSLink:
    """Admission, reports and aborting: the parts of the wire outside the step."""

    def __init__(self, session: tf.compat.v1.Session, wire: Wire) -> None:
        self.session, self.wire = session, wire
        self._hello = wire.hello.dequeue()
        self._verdict = tf.compat.v1.placeholder(tf.string, [])
        self._model = tf.compat.v1.placeholder(tf.float32, [None])
        self._start = tf.compat.v1.placeholder(tf.int64, [])
        self._welcome: dict[tuple[int, str], tf.Operation] = {}  # (index, nonce) -> its enqueue
        self._report = [q.dequeue() for q in wire.report]
        self._last_report: list[bytes | None] = [None] * wire.workers  # each worker's last record taken
        self._reason = tf.compat.v1.placeholder(tf.string, [])
        self._notify = [q.enqueue([self._reason]) for q in wire.notice]
        self._close = [q.close(cancel_pending_enqueues=True) for q in wire.down]
        self._unread_notices = [q.size() for q in wire.notice]

    def admit(self, config: RunConfig, model: np.ndarray, start_step: int, method: Method, timeout: float,
              log=print, checkpoint_every: int = 0) -> int:
        """Wait until every worker said hello with the PS's configuration, then send each the model.

        A worker with other flags (or holding what the method refuses) is refused at once with the
        differences; the PS keeps waiting for a worker with the right flags at that index until the
        timeout. Returns the phase of the first step that exchanges, decided once every worker is in
        (it may depend on what they hold) and sent with the welcome, as is `checkpoint_every` (the steps
        between the checkpoints inside an epoch, which the workers save their side of: runtime/checkpoints.py).
        """
        admitted: dict[int, str] = {}  # index -> nonce of the process admitted as that worker
        refused: dict[int, str] = {}   # index -> why the last process that came as that worker was refused
        end = time.monotonic() + timeout
        while len(admitted) < self.wire.workers:
            left = end - time.monotonic()
            missing = sorted(set(range(self.wire.workers)) - set(admitted))
            try:
                if left <= 0:
                    raise tf.errors.DeadlineExceededError(None, None, "")
                index, text = deadline.run(self.session, self._hello, seconds=left, what="waiting for workers")
            except tf.errors.DeadlineExceededError:
                raise WorkerFailed(_not_admitted(missing, refused, timeout), tuple(missing), mid_run=False) from None
            index = int(index)
            try:
                hello = json.loads(text.decode())
                nonce, their_config, holds = str(hello["nonce"]), hello["config"], dict(hello.get("holds", {}))
            except (ValueError, KeyError, TypeError):
                log(f"ignored a hello from worker {index} that is not from this version of mp2_worker.py")
                continue
            problems = self._check(config, index, their_config, admitted) or method.admit_worker(index, holds)
            if problems:
                log(f"refused worker {index}: {problems}")
                refused[index] = problems
                self._send_welcome(index, nonce, {"status": "refused", "reason": problems}, np.zeros(0, np.float32), 0)
                continue
            admitted[index] = nonce
            log(f"worker {index} joined ({len(admitted)}/{self.wire.workers})")
        first = method.next_exchange(start_step)
        phase = method.next_phase(first) if first is not None else 0
        for index, nonce in sorted(admitted.items()):
            self._send_welcome(index, nonce, {"status": "ok", "phase": phase, "checkpoint_every": checkpoint_every},
                               model, start_step)
        return phase

    def _check(self, config: RunConfig, index: int, text: str, admitted: dict[int, str]) -> str:
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

    def _send_welcome(self, index: int, nonce: str, verdict: dict, model: np.ndarray, start: int) -> None:
        key = (index, nonce)
        if key not in self._welcome:
            queue = welcome_queue(index, nonce)
            self._welcome[key] = queue.enqueue([self._verdict, self._model, self._start])
            self._close.append(queue.close(cancel_pending_enqueues=True))
        feed = {self._verdict: json.dumps(verdict), self._model: model, self._start: start}
        # Capacity 1 and one message per process: this never waits, whether the worker is alive or not.
        deadline.run(self.session, self._welcome[key], feed, seconds=30, what=f"welcoming worker {index}")

    def reports(self, timeout: float, epoch: int | None) -> list[dict]:
        """One report from every worker, in worker order: the metrics of `epoch`, or (None) the final "done".

        A worker sends a report again when TensorFlow's runtime aborted it without saying whether it
        arrived (WorkerGraph.report), so a record equal to the last one taken from that worker is a second
        copy: skipped. A record that is neither what was expected nor a copy means the two sides disagree
        on where the run is: the run stops, naming it."""
        got = []
        end = time.monotonic() + timeout
        for index, dequeue in enumerate(self._report):
            while True:
                try:
                    text = deadline.run(self.session, dequeue, seconds=max(0.001, end - time.monotonic()),
                                        what="waiting for reports")
                except tf.errors.DeadlineExceededError:
                    raise WorkerFailed(f"worker {index} sent no report for {timeout:.0f} s (it died or hangs; see its "
                                       f"log)", (index,)) from None
                if text != self._last_report[index]:
                    break
            self._last_report[index] = text
            record = json.loads(text.decode())
            if (record.get("done") is True) if epoch is None else (record.get("epoch") == epoch):
                got.append(record)
                continue
            expected = report_of({"done": True} if epoch is None else {"epoch": epoch})
            raise WorkerFailed(f"worker {index} reported {report_of(record)} where the PS expected {expected}: the "
                               f"two disagree on where the run is; resume it from its last checkpoint (--resume)")
        return got

    def abort(self, reason: str, silent: tuple[int, ...] = (), resumable: bool = False) -> None:
        """Tell every worker why (and whether a resume from the checkpoint can finish the run), then close
        their reply queues so a blocked worker wakes at once. The PS then waits for the notices to be read,
        but not by the `silent` workers (those that stopped answering)."""
        notice = json.dumps({"reason": reason, "resumable": resumable})
        for notify in self._notify:
            try:
                deadline.run(self.session, notify, {self._reason: notice}, seconds=2, what="notifying workers")
            except tf.errors.OpError:
                pass  # a notice is already waiting there
        try:
            self.session.run(self._close)
        except tf.errors.OpError:
            pass
        # The notices live in this process: stay until the workers have read them (a dead one never
        # will, hence the bound), or they would only learn that the PS is gone, not why.
        wait_until_read(self.session, [size for i, size in enumerate(self._unread_notices) if i not in silent],
                        NOTICE_GRACE)
