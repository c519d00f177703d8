"""A worker's graph: local training, and its end of the wire to the PS.

Per step two session runs: train and send (the method's `up`), then take the reply and apply it.
The second blocks until every worker has pushed and the PS has answered: the step barrier. A step
with further exchanges (`WorkerPhase.then`) has one more run per exchange before the last, each
taking a reply and sending the next payload; a local step (`Method.is_local`) is one run that trains.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from helpers.optim import learning_rate
from models import Model
from runtime import deadline, faults, tferrors
from runtime.cluster import PS_DEVICE
from runtime.methods.local_model import LocalModel
from runtime.methods.base import Method, WorkerSide, restore_state, state_arrays
from runtime.shards import Shard, chunked, partition
from runtime.wire import (CONTROL_DTYPE, Wire, as_list, digest, nbytes, push_arrived, reply_gone, report_of,
                          welcome_queue)


NOTICE_MARGIN = 20.0  # seconds
RETRIES = 3  # aborted calls of one exchange asked about and recovered before the run stops
LOOK_AGAIN_SECONDS = 1.0


class RunStopped(Exception):
    """The run cannot go on: the PS refused this worker, stopped the run, or vanished. `resumable`: a resume
    from the run's checkpoint can finish it (a stalled or failed call, not a refusal or a mistake)."""

    def __init__(self, message: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


class Pulled(NamedTuple):
    """What the exchanges after the first push of a step did."""

    received: int     # bytes of every reply, control words included
    sent: int         # bytes of the payloads sent after the first (further exchanges)
    next_phase: int   # of the next step that exchanges, as the PS announced it
    theirs: int       # the PS's model digest (with --verify-sync, else 0)
    mine: int         # this worker's


class WorkerGraph:
    """A worker's graph and its calls (join, push, pull, train_locally, report, state), which WorkerLoop drives.

    `simulated`: a stand-in for training, for benchmarks/ps_step.py, which times the PS against many workers on
    one machine: no forward or backward pass is built (the loss and accuracy read 0), and every gradient the
    method asks for (WorkerSide.gradients) is a fixed random tensor, drawn once per worker and variable. The
    rest is the method's own graph (its optimizer step, compression, error feedback, payload) and the runtime's
    exchange, so what the worker sends and takes back is what a training worker would.
    """

    def __init__(self, model: Model, method: Method, wire: Wire, index: int, lr: float, verify_sync: bool = False,
                 log: Callable[[str], None] = print, shards: list[Shard] | None = None, simulated: bool = False) -> None:
        self.index, self.wire, self.layout, self.method, self.log = index, wire, model.layout, method, log
        # With several PS tasks (or --chunks) the payload goes out as one piece per piece of the model
        # (Method.split), each into its own up/i, all in one session run; the pieces' replies are put together
        # again (Method.join) before the method takes them.
        self.shards = shards or partition(model.layout, 1)
        self._last_phase: int | None = None
        self.exchanges = 0  # payloads sent since joining: the PS counts them the same way (Wire.delivered)
        self.retries = 0    # aborted calls that were asked about and recovered
        self.joined = False  # before the PS admits it, a failure is a setup problem, not a stall to resume from
        device = f"/job:worker/task:{index}"
        self.local = LocalModel(model, device)
        h, w, c = model.input_shape
        with tf.device(device):
            self.images = tf.compat.v1.placeholder(tf.float32, [None, h, w, c], name="images")
            self.labels = tf.compat.v1.placeholder(tf.float32, [None, model.classes], name="soft_labels")
            if simulated:  # the fed batch goes unused (see the class docstring)
                self.loss = self.accuracy = tf.constant(0.0)
            else:
                logits = model.forward(self.local.vars, self.images)
                self.loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=self.labels, logits=logits))
                hits = tf.equal(tf.argmax(logits, 1), tf.argmax(self.labels, 1))
                self.accuracy = tf.reduce_mean(tf.cast(hits, tf.float32))
            # The global step, set at the welcome and advanced after each reply is applied.
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.side = WorkerSide(self.local, self.loss, learning_rate(lr, self.step), self.step, device)
            if simulated:
                self.side.stand_in = _stand_in_gradients(self.side, index)
            self.push_ops, self.pull_ops, self.enter_ops, self.round_ops, self.read_back = {}, {}, {}, {}, {}
            self.traced_push, self.traced_pull, self.traced_rounds = {}, {}, {}
            # A push is two runs: training stages the payload in this worker's outbox (nothing remote, so
            # TensorFlow's runtime cannot abort it half done), then the outbox is sent. An aborted send
            # can then be asked about (did it reach up/i?) and sent again only if it did not: never twice.
            # One outbox a piece (the first's names are those of a one-piece run).
            self.outbox = [[tf.Variable(tf.zeros([0], dtype), shape=tf.TensorShape(None), trainable=False,
                                        name=f"outbox_{k}" + (f"_p{p}" if p else "")) for k, dtype in enumerate(method.up_dtypes)]
                           for p in range(len(self.shards))]
            pieces = [[v.read_value() for v in box] for box in self.outbox]
            self.send_ops = [links.up[index].enqueue(piece) for links, piece in zip(wire.shards, pieces)]  # one each
            # All pieces at once: to each PS task in parallel. With --chunks a task's pieces go in turn, one session
            # run each (piece r of every task together), so its first pieces arrive, and are answered, while the
            # rest are on the way; the reply is taken while the send still runs (push/pull: both directions of a
            # link busy). The run's answer releases the next piece; it can come back on another connection than the
            # reply's (start_server's channels), so it need not wait behind the reply's bytes.
            self.overlap = chunked(self.shards)
            ranks = [sum(1 for t in self.shards[:k] if t.index == s.index) for k, s in enumerate(self.shards)]
            self.send_rounds = [[k for k, r in enumerate(ranks) if r == rank] for rank in range(max(ranks) + 1)]
            self._sending: _Sending | None = None
            self.landed_probe = [[links.up[index].size(), links.delivered[index].read_value()] for links in wire.shards]
            # What the last reply said, kept here: a pull whose answer was lost after it was applied is read back.
            self.last_reply = [tf.Variable(tf.constant(0, tf.int64), trainable=False, name="last_reply_bytes"),
                               tf.Variable(tf.zeros([2], CONTROL_DTYPE), trainable=False, name="last_reply_control")]
            self.reply_probe = [[links.down[index].size() for links in wire.shards], self.step.read_value(),
                                [links.replied.read_value() for links in wire.shards]]
            self.join_op = method.build_join(self.side)
            for phase, built in method.build_worker(self.side).items():
                self.enter_ops[phase] = built.enter
                staged = self._pieces(built.up, phase, 0)
                stage = tf.group(*[tf.compat.v1.assign(v, t, validate_shape=False)
                                   for box, piece in zip(self.outbox, staged) for v, t in zip(box, piece)])
                self.push_ops[phase] = [stage, self.loss, self.accuracy, nbytes([t for piece in staged for t in piece])]
                with tf.control_dependencies(built.up):  # the model as trained, before the reply lands
                    self.traced_push[phase] = [self.local.vector(), *built.up]
                self.round_ops[phase], self.traced_rounds[phase] = [], []
                for exchange, then in enumerate(built.then):  # every exchange but the last: its reply makes the next payload
                    replies = [as_list(links.down[index].dequeue()) for links in wire.shards]
                    reply = self._joined([r[:-1] for r in replies], phase, exchange)
                    up = then(reply)
                    ups = self._pieces(up, phase, exchange + 1)
                    sends = [links.up[index].enqueue(piece) for links, piece in zip(wire.shards, ups)]
                    self.round_ops[phase].append([sends[0] if len(sends) == 1 else tf.group(*sends),
                                                  tf.add_n([nbytes(r) for r in replies]),
                                                  nbytes([t for piece in ups for t in piece])])
                    self.traced_rounds[phase].append([reply, up])
                replies = [as_list(links.down[index].dequeue()) for links in wire.shards]
                payload = self._joined([r[:-1] for r in replies], phase, len(built.then))
                control, got = replies[0][-1], tf.add_n([nbytes(r) for r in replies])  # every task's reply ends with it
                with tf.control_dependencies([built.apply(payload)]):
                    advance = tf.group(self.step.assign_add(1), self.last_reply[0].assign(got),
                                       self.last_reply[1].assign(control))
                with tf.control_dependencies([advance]):
                    check = digest(method.synced(phase, self.local.vector())) if verify_sync else tf.constant(0, tf.int64)
                    self.pull_ops[phase] = [got, control, check]
                    self.traced_pull[phase] = payload
                # What an applied reply said, read again after an aborted call (_pull_last): no edge to the
                # pull above, which would take a reply again.
                self.read_back[phase] = [self.last_reply[0].read_value(), self.last_reply[1].read_value(),
                                         digest(method.synced(phase, self.local.vector())) if verify_sync
                                         else tf.constant(0, tf.int64)]
            train = method.build_local(self.side)
            if train is not None:  # a local step: train, advance the step, nothing on the wire
                with tf.control_dependencies([train]):
                    self.local_ops = [self.step.assign_add(1), self.loss, self.accuracy]
                    self.traced_local = [self.local.vector()]
            self.init_op = tf.compat.v1.variables_initializer(
                self.local.variables() + [self.step] + self.side.state + self.side.scratches
                + [v for box in self.outbox for v in box] + self.last_reply)

            self.hello_json = tf.compat.v1.placeholder(tf.string, [])
            self.hello_op = wire.hello.enqueue([tf.constant(index, tf.int32), self.hello_json])
            # A welcome queue of this process's own: a verdict meant for another process claiming
            # the same index (or left by one that died) can never reach this one.
            self.nonce = secrets.token_hex(8)
            self.welcome = welcome_queue(index, self.nonce).dequeue()
            self.model_feed = tf.compat.v1.placeholder(tf.float32, [self.layout.total])
            self.load_model = self.local.assign(self.model_feed)
            self.start_step = tf.compat.v1.placeholder(tf.int64, [])
            self.set_step = self.step.assign(self.start_step)
            # Fed on the PS's device: the report is then one graph on the PS, with no part on this worker whose
            # copy TensorFlow's runtime could refuse while the PS's part waits for it (a run stalled on that).
            with tf.device(PS_DEVICE):
                self.record = tf.compat.v1.placeholder(tf.string, [])
            self.report_op = wire.report[index].enqueue([self.record])
            self.notice = wire.notice[index].dequeue()

    def _pieces(self, up: list[tf.Tensor], phase: int, exchange: int) -> list[list[tf.Tensor]]:
        """The payload of exchange `exchange` of a `phase` step as one payload per piece of the model."""
        return self.method.split(up, self.shards, phase, exchange) if len(self.shards) > 1 else [up]

    def _joined(self, replies: list[list[tf.Tensor]], phase: int, exchange: int) -> list[tf.Tensor]:
        """The pieces' replies to exchange `exchange` (control words taken off) as the method's one reply."""
        return self.method.join(replies, self.shards, phase, exchange) if len(self.shards) > 1 else replies[0]

    # --- lifecycle ---------------------------------------------------------------------------
    def join(self, session: tf.compat.v1.Session, config_json: str, timeout: float,
             ps_address: str) -> tuple[int, int, int]:
        """Introduce this worker to the PS and take its model; returns (first step, its phase, the steps between
        checkpoints inside an epoch: 0 for epoch ends only)."""
        # Local variables only (PS-side state belongs to the PS). The first call of a session reaches
        # the PS too: bounded, for a port that answers without a working PS behind it.
        self._run(session, self.init_op, None, timeout,
                  f"starting a session with the PS at {ps_address} (something accepts connections there but does not "
                  f"answer as a TensorFlow server: another program on that port, or a stuck PS; check --ps_hosts)")
        hello = json.dumps({"config": config_json, "nonce": self.nonce, "holds": self.method.worker_holds()})
        self._run(session, self.hello_op, {self.hello_json: hello}, timeout, "sending hello to the PS")
        verdict, model, start = self._run(session, self.welcome, None, timeout, "waiting to be admitted by the PS")
        verdict = json.loads(verdict.decode())
        if verdict["status"] != "ok":
            raise RunStopped(f"the PS refused this worker: {verdict['reason']}")
        session.run([self.load_model, self.set_step], {self.model_feed: model, self.start_step: start})
        if self.join_op is not None:
            session.run(self.join_op)
        self.joined = True
        return int(start), int(verdict["phase"]), int(verdict.get("checkpoint_every", 0))

    def state(self, session: tf.compat.v1.Session) -> dict[str, np.ndarray]:
        """The method's and the optimizer's state on this worker (for the worker's state file), and the phase of
        its last step: a resumed worker whose first step enters another phase runs that phase's `enter` too."""
        last = -1 if self._last_phase is None else self._last_phase
        return {**state_arrays(session, self.side.state), "last_phase": np.asarray(last, np.int64)}

    def restore(self, session: tf.compat.v1.Session, arrays: dict[str, np.ndarray], where: str) -> None:
        restore_state(session, self.side.state, arrays, where)
        if int(arrays.get("last_phase", -1)) >= 0:
            self._last_phase = int(arrays["last_phase"])

    def report(self, session: tf.compat.v1.Session, record: dict, timeout: float) -> None:
        """Send an epoch's record (or "done"). A send that may or may not have taken effect is sent again: the
        PS skips a record equal to the one it took last from this worker (PSLink.reports), so a copy that
        arrived twice is read once."""
        what, text = "reporting to the PS", json.dumps(record, sort_keys=True)
        for attempt in range(RETRIES + 1):
            try:
                faults.before_report(self.index, record)
                deadline.run(session, self.report_op, {self.record: text}, seconds=timeout, what=what)
                faults.after_report(self.index, record)
                return
            except tf.errors.AbortedError as e:
                if not tferrors.ambiguous(e) or attempt == RETRIES:
                    raise self._stopped(session, e, what, timeout) from None
                self.log(f"warning: TensorFlow's runtime aborted the report of {report_of(record)} "
                         f"({tferrors.explain(e)}); sent again")
                time.sleep(LOOK_AGAIN_SECONDS)
            except tf.errors.OpError as e:
                raise self._stopped(session, e, what, timeout) from None

    # --- one step -----------------------------------------------------------------------------
    def push(self, session: tf.compat.v1.Session, phase: int, images: np.ndarray, labels: np.ndarray,
             timeout: float, trace: list | None = None, step: int = -1) -> tuple[float, float, int]:
        """Train on this batch and send the payload: (loss, accuracy, bytes sent).

        With `trace`, the trained model and the payload are appended to it (for --trace-steps).
        """
        if self._last_phase is not None and phase != self._last_phase and self.enter_ops[phase] is not None:
            self._run(session, self.enter_ops[phase], None, timeout, "entering a new phase")
        self._last_phase = phase
        feed = {self.images: images, self.labels: labels}
        fetches = self.push_ops[phase] + (self.traced_push[phase] if trace is not None else [])
        _, loss, acc, sent, *traced = self._run_local(session, fetches, feed, timeout, "training", step)
        self.exchanges += 1
        exchange = self.exchanges  # a send beside the pull asks about its own exchange, whatever the pull counts
        if self.overlap:  # the pull starts while this runs; it collects the send's outcome (_finish_send)
            self._sending = _Sending(lambda: self._send(session, step, timeout, exchange))
        else:
            self._send(session, step, timeout, exchange)
        if trace is not None:
            trace.append(traced)
        return float(loss), float(acc), int(sent)

    def _send(self, session: tf.compat.v1.Session, step: int, timeout: float, exchange: int) -> None:
        """Send the staged payload (to every PS task at once). A send that may or may not have taken effect
        (tferrors.ambiguous) is asked about: what never reached a task's up/i is sent again (at most RETRIES
        times), what did is not."""
        pending, sent = list(range(len(self.send_ops))), set()
        for attempt in range(RETRIES + 1):
            try:
                faults.before_send(self.index, step)
                hang = faults.hangs(self.index, step)
                if hang is not None:
                    self._run(session, hang, None, timeout, "pushing to the PS")
                # In rounds the first time (--chunks); again after an abort, only the pieces that did not arrive.
                rounds = self.send_rounds if attempt == 0 else [pending]
                for ks in rounds:
                    deadline.run(session, [self.send_ops[k] for k in ks], seconds=timeout, what="pushing to the PS")
                    sent.update(ks)
                faults.after_send(self.index, step)
                return
            except tf.errors.AbortedError as e:
                if not tferrors.ambiguous(e) or attempt == RETRIES:
                    raise self._stopped(session, e, "pushing to the PS", timeout) from None
                pending = [k for k in pending if k not in sent and not self._landed(session, timeout, exchange, k)]
                self.retries += 1
                self.log(f"warning: step {step + 1}: TensorFlow's runtime aborted the push ({tferrors.explain(e)}); "
                         + ("it had not reached the PS: sent again" if pending else "it had reached the PS: not sent again"))
                if not pending:
                    return
            except tf.errors.OpError as e:
                raise self._stopped(session, e, "pushing to the PS", timeout) from None

    def pull(self, session: tf.compat.v1.Session, phase: int, timeout: float, trace: list | None = None,
             step: int = -1) -> Pulled:
        """Wait for the PS's reply, go through the step's further exchanges, and apply the last reply.

        The PS judges which worker is missing within `timeout`; a worker waits a little longer,
        so that the PS's notice naming the culprit reaches it before its own deadline passes. With a send still
        running beside it (--chunks), the step ends when both did; a send that failed is the reason the run stops.
        """
        try:
            pulled = self._pull(session, phase, timeout, trace, step)
        except RunStopped as e:
            raise self._finish_send() or e from None
        failed = self._finish_send()
        if failed:
            raise failed
        return pulled

    def _finish_send(self) -> RunStopped | None:
        sending, self._sending = self._sending, None
        return sending.outcome() if sending else None

    def _pull(self, session: tf.compat.v1.Session, phase: int, timeout: float, trace: list | None, step: int) -> Pulled:
        received = sent = 0
        for fetches, traced_round in zip(self.round_ops[phase], self.traced_rounds[phase]):
            self.exchanges += 1  # a further exchange's payload: counted like the PS counts it (no retry here)
            _, got, put, *traced = self._run(session, fetches + ([traced_round] if trace is not None else []), None,
                                             timeout + NOTICE_MARGIN, "waiting for the PS's reply")
            received, sent = received + int(got), sent + int(put)
            if trace is not None:
                trace.append(traced[0])
        fetches = self.pull_ops[phase] + (self.traced_pull[phase] if trace is not None else [])
        got, control, mine, *traced = self._pull_last(session, fetches, timeout + NOTICE_MARGIN, step, trace is not None,
                                                      phase)
        if trace is not None:
            trace.append(traced)
        return Pulled(received + int(got), sent, int(control[0]), int(control[1]), int(mine))

    def _landed(self, session: tf.compat.v1.Session, timeout: float, exchange: int, task: int = 0) -> bool:
        """Whether this worker's payload of exchange `exchange` reached piece `task`'s up/i: still queued there, or
        taken (Wire.delivered).

        The PS marks a payload taken just after it dequeues it; a second look a moment later closes
        that gap, so a payload the PS holds is never taken for lost."""
        for look in range(2):
            queued, delivered = self._run(session, self.landed_probe[task], None, timeout,
                                          "asking the PS whether an aborted push arrived")
            if push_arrived(queued, delivered, exchange):
                return True
            if look == 0:
                time.sleep(LOOK_AGAIN_SECONDS)
        return False

    def _pull_last(self, session: tf.compat.v1.Session, fetches: list, timeout: float, step: int, traced: bool,
                   phase: int) -> list:
        """The run that takes the step's last reply and applies it. If it fails in a way that may or may
        not have taken effect (tferrors.ambiguous): once the reply was applied (the local step moved on),
        what it said is read back; while it waits in down/i, or the PS has not sent it yet (Wire.replied),
        it is taken again; a reply taken and lost on the way ends the run."""
        what = "waiting for the PS's reply"
        for attempt in range(RETRIES + 1):
            try:
                faults.before_pull(self.index, step)
                got = deadline.run(session, fetches, seconds=timeout, what=what)
                faults.after_pull(self.index, step)
                return got
            except tf.errors.AbortedError as e:
                if not tferrors.ambiguous(e) or attempt == RETRIES:
                    raise self._stopped(session, e, what, timeout) from None
                self.retries += 1
                if tferrors.delivered_twice(e):
                    time.sleep(LOOK_AGAIN_SECONDS)  # the first copy of the call may still be settling on the PS
                waiting, done, replied = self._run(session, self.reply_probe, None, timeout,
                                                   "asking whether an aborted reply arrived")
                if done == step + 1 and not traced:
                    self.log(f"warning: step {step + 1}: TensorFlow's runtime aborted the call that took the PS's "
                             f"reply ({tferrors.explain(e)}); it had been applied: read back")
                    return list(self._run(session, self.read_back[phase], None, timeout, "reading the applied reply"))
                if any(reply_gone(w, r, self.exchanges) for w, r in zip(waiting, replied)):
                    raise RunStopped(f"step {step + 1}: TensorFlow's runtime aborted the call that took the PS's reply "
                                     f"after the reply had left the PS's queue ({tferrors.explain(e)}); it cannot be "
                                     f"had again: resume the run from its last checkpoint (--resume)", resumable=True) from None
                self.log(f"warning: step {step + 1}: TensorFlow's runtime aborted the call that takes the PS's reply "
                         f"({tferrors.explain(e)}); " + ("the reply still waits: taken again" if all(waiting) else
                                                         "the PS has not sent it yet: waited for again"))
            except tf.errors.OpError as e:
                raise self._stopped(session, e, what, timeout) from None

    def train_locally(self, session: tf.compat.v1.Session, images: np.ndarray, labels: np.ndarray, timeout: float,
                      trace: list | None = None) -> tuple[float, float]:
        """A local step (`Method.is_local`): train on this batch, send nothing: (loss, accuracy)."""
        fetches = self.local_ops + (self.traced_local if trace is not None else [])
        _, loss, acc, *traced = self._run_local(session, fetches, {self.images: images, self.labels: labels}, timeout,
                                                "training a local step")
        if trace is not None:
            trace.append(traced)
        return float(loss), float(acc)

    # --- errors -------------------------------------------------------------------------------
    def _run_local(self, session, fetches, feed, timeout: float, what: str, step: int = -1):
        """`_run` for a call that runs on this worker alone. TensorFlow refuses a call whose request id it
        has seen before, and ids can collide (docs/reliability.md); it refuses before running any of the
        call, so a refused local call is run again."""
        for attempt in range(RETRIES + 1):
            try:
                faults.before_train(self.index, step)
                return deadline.run(session, fetches, feed, seconds=timeout, what=what)
            except tf.errors.AbortedError as e:
                if not tferrors.delivered_twice(e) or attempt == RETRIES:
                    raise self._stopped(session, e, what, timeout) from None
                self.retries += 1
                self.log(f"warning: {what}: TensorFlow's runtime refused the call as a repeated request; run again")
            except tf.errors.OpError as e:
                raise self._stopped(session, e, what, timeout) from None

    def _run(self, session, fetches, feed, timeout: float, what: str):
        try:
            return deadline.run(session, fetches, feed, seconds=timeout, what=what)
        except tf.errors.OpError as e:
            raise self._stopped(session, e, what, timeout) from None

    def _stopped(self, session, e: tf.errors.OpError, what: str, timeout: float) -> RunStopped:
        """Why the run cannot go on after `e`, in one line."""
        if isinstance(e, tf.errors.DeadlineExceededError):
            reason = f"{what}: no answer within {timeout:.0f} s (the PS is slow, stuck or gone)"
            if self.joined:
                deadline.evidence()
            return RunStopped(reason, resumable=self.joined)
        if isinstance(e, (tf.errors.OutOfRangeError, tf.errors.CancelledError)):
            return self._notice(session)
        # TensorFlow's own words, and a cause only where they show one: a task claimed twice can come as
        # Unavailable ("Socket closed") carrying the PS's "session handle is not found", or as Aborted.
        cause = tferrors.known_cause(e, self.index)
        # Another process holds this task, or the run never started: no resume.
        resumable = self.joined and "handle is not found" not in (e.message or "")
        if isinstance(e, tf.errors.UnavailableError):
            task = re.search(r"/job:ps/replica:0/task:([1-9]\d*)", e.message or "")  # a PS task that holds a shard
            peer = f"PS task {task.group(1)}" if task else "the PS"
            return RunStopped(f"{what}: lost the connection to {peer} ({tferrors.explain(e)})"
                              + (f" — {cause}" if cause else ""), resumable=resumable)
        return RunStopped(f"{what}: TensorFlow's runtime failed the call: {type(e).__name__}: "
                          f"{tferrors.explain(e)}" + (f" — {cause}" if cause else ""), resumable=resumable)

    def _notice(self, session: tf.compat.v1.Session) -> RunStopped:
        try:
            (text,) = deadline.run(session, [self.notice], seconds=5, what="reading the PS's notice")
            notice = json.loads(text.decode())
            return RunStopped(f"the PS stopped the run: {notice['reason']}", resumable=bool(notice["resumable"]))
        except tf.errors.OpError as e:
            # The notice cannot be read when the PS's server no longer holds this process's session (another
            # process took over its task): then that is the reason, whichever call noticed it first.
            cause = tferrors.known_cause(e, self.index)
            return RunStopped(f"the PS stopped the run: {cause}" if cause else
                              "the PS stopped the run (no reason given; see the PS's log)")


def _stand_in_gradients(side: WorkerSide, index: int) -> Callable[[list[tf.Variable]], list[tf.Tensor]]:
    """Gradients for a simulated worker: per variable a fixed random tensor (scale 0.01, seeded by the worker and
    the variable's place in the model), held in a variable made on first use and set by the worker's init."""
    made: dict = {}
    order = {v.ref(): k for k, v in enumerate(side.local.variables())}

    def gradients(var_list: list[tf.Variable]) -> list[tf.Tensor]:
        for v in var_list:
            if v.ref() not in made:
                k = order.get(v.ref(), len(order) + len(made))
                noise = 0.01 * tf.random.stateless_normal(v.shape, seed=[index, k], dtype=v.dtype)
                made[v.ref()] = side.scratch(f"stand_in_gradient_{k}", noise, v.dtype)
        return [made[v.ref()].read_value() for v in var_list]

    return gradients


class _Sending(threading.Thread):
    """A send running beside the pull; `outcome` waits for it and gives the RunStopped it raised, if any."""

    def __init__(self, send: Callable[[], None]) -> None:
        super().__init__(daemon=True, name="send")
        self._send, self._failed = send, None
        self.start()

    def run(self) -> None:
        try:
            self._send()
        except RunStopped as e:
            self._failed = e

    def outcome(self) -> RunStopped | None:
        self.join()
        return self._failed


class StepTrace:
    """--trace-steps N: the first N steps as this worker saw them, for checking a method by hand.

    For step s: `s/phase`, `s/trained` (the whole local model after training, before the reply),
    `s/up/k` (the payload's tensors) and `s/reply/k` (the reply's tensors, without the control word).
    A step of several exchanges also has `s/exchange/e/up/k` and `s/exchange/e/reply/k` for each
    exchange e (`s/up` is the first one's payload, `s/reply` the last one's reply); a local step has
    `s/phase` (-1) and `s/trained` only.
    """

    def __init__(self, path, steps: int) -> None:
        self.path, self.steps, self.arrays = path, steps, {}

    def add(self, step: int, phase: int, traced: list) -> None:
        """`traced`: what push (or train_locally) and pull appended for this step."""
        (trained, *up), *exchanges = traced
        self.arrays[f"{step}/phase"] = np.asarray(phase)
        self.arrays[f"{step}/trained"] = trained
        if not exchanges:
            return  # a local step
        *middle, reply = exchanges  # middle: [reply, next payload] of every exchange but the last
        self._put(f"{step}/up", up)
        self._put(f"{step}/reply", reply)
        if middle:
            ups, replies = [up, *(m[1] for m in middle)], [*(m[0] for m in middle), reply]
            for e, (u, r) in enumerate(zip(ups, replies)):
                self._put(f"{step}/exchange/{e}/up", u)
                self._put(f"{step}/exchange/{e}/reply", r)

    def _put(self, prefix: str, tensors: list) -> None:
        self.arrays.update({f"{prefix}/{k}": v for k, v in enumerate(tensors)})

    def write(self) -> None:
        if self.arrays:
            from helpers import npzio

            npzio.write(self.path, self.arrays, {"steps": self.steps})
