"""The queues on the PS through which workers and the PS talk.

Every process builds the same queue ops with the same shared names, so they address one queue
resource on /job:ps/task:0. Each worker has its own queues, so a deadline on one tells exactly
which worker is missing and a timed-out read never swallows another worker's message.

    hello      worker -> PS  (task index, JSON: the worker's RunConfig and a random nonce)
    welcome/i/nonce  PS -> worker  (verdict JSON, the global model, the first step); one queue per
               worker process, so a verdict can never reach another process that claims the same index
    up/i       worker -> PS  what the method sends each step
    down/i     PS -> worker  what the method sends back, then the control word
               (with several PS tasks or --chunks, each piece of the model has its own, `up/i_pP` on its task)
    ps_hello, ps_notice/k   PS task k -> task 0 (its configuration), task 0 -> PS task k (the run ended)
    report/i   worker -> PS  one JSON record: an epoch's metrics, or "done"
    notice/i   PS -> worker  why the PS stopped the run, read when down/i is closed
    delivered/i  a PS variable: the exchange whose payload the PS last took from up/i
    replied      a PS variable: the exchange whose reply the PS last put in every down/i

The control word ends every reply: int64 [2] = (the phase of the next step, the digest of the PS's
model when --verify-sync is on, else 0). It travels like any payload and is counted with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from runtime.cluster import PS_DEVICE, ps_device

PREFIX = "mp2"
CONTROL_DTYPE = tf.int64


@dataclass
class ShardWire:
    """The step's queues and counters of one piece of the model on its PS task: what a worker sends it and
    what it sends back. With one PS task and no --chunks there is one, on task 0."""

    task: int
    up: list[tf.queue.FIFOQueue]     # up/i: worker i's payload (its slice of it, with several tasks)
    down: list[tf.queue.FIFOQueue]   # down/i: the reply to worker i, then the control word
    delivered: list[tf.Variable]     # the exchange whose payload the task last took from up/i
    replied: tf.Variable             # the exchange whose reply the task last put in every down/i


class Wire:
    def __init__(self, workers: int, up: tuple[tf.DType, ...], down: tuple[tf.DType, ...], ps_tasks: int = 1,
                 pieces: list[int] | None = None) -> None:
        """`pieces`: the PS task of each piece of an exchange (runtime/shards.py; default: one piece per task)."""
        self.workers = workers
        with tf.device(PS_DEVICE):
            self.hello = _queue("hello", 2 * workers, [tf.int32, tf.string])
            self.report = [_queue(f"report/{i}", 2, [tf.string]) for i in range(workers)]
            self.notice = [_queue(f"notice/{i}", 1, [tf.string]) for i in range(workers)]
        # PS tasks 1.. say hello to task 0 (their configuration) and learn from it when the run ends.
        self.ps_hello = ps_hello_queue(ps_tasks)
        self.ps_notice = [ps_notice_queue(k) for k in range(ps_tasks)]
        # Shapes stay open: a method may send variable-length (sparse) tensors.
        self.up_dtypes, self.down_dtypes = list(up), [*down, CONTROL_DTYPE]
        self.shards = [self._shard(p, task, workers) for p, task in enumerate(pieces or range(ps_tasks))]
        # Task 0's, the whole wire with one PS task (methods with several exchanges a step run on one task).
        self.up, self.down = self.shards[0].up, self.shards[0].down
        self.delivered, self.replied = self.shards[0].delivered, self.shards[0].replied

    def _shard(self, piece: int, task: int, workers: int) -> ShardWire:
        at = "" if piece == 0 else f"_p{piece}"  # the first piece's names are those of a one-piece wire
        with tf.device(ps_device(task)):
            up = [_queue(f"up/{i}{at}", 2, self.up_dtypes) for i in range(workers)]
            down = [_queue(f"down/{i}{at}", 2, self.down_dtypes) for i in range(workers)]
            # The exchange whose payload the PS last took from up/i (counted from 1 since the PS started; -1 before
            # any). The PS names a missing worker by it; a worker whose push was aborted reads it to learn whether
            # the push arrived. Shared by name; the PS initialises it.
            delivered = [tf.Variable(tf.constant(-1, tf.int64), trainable=False, name=f"delivered_{i}{at}")
                         for i in range(workers)]
            # The exchange whose reply the PS last enqueued (-1 before any): a worker whose wait for a reply was
            # aborted, finding down/i empty, learns from it whether the reply is still to come or was lost.
            replied = tf.Variable(tf.constant(-1, tf.int64), trainable=False, name=f"replied{at}")
        return ShardWire(task, up, down, delivered, replied)

    def counters(self) -> list[tf.Variable]:
        """Every task's delivered and replied counters (the PS initialises them)."""
        return [v for s in self.shards for v in (*s.delivered, s.replied)]


def push_arrived(queued: int, delivered: int, exchange: int) -> bool:
    """Whether a worker's payload of exchange `exchange` reached the PS: still in up/i (`queued` items),
    or taken already (`delivered`, the worker's Wire.delivered value)."""
    return queued > 0 or delivered >= exchange


def reply_gone(waiting: int, replied: int, exchange: int) -> bool:
    """Whether the PS's reply to exchange `exchange` has left down/i (`waiting` items): sent (`replied`,
    Wire.replied) and no longer there, so a worker that did not get it cannot have it again."""
    return waiting == 0 and replied >= exchange


def welcome_queue(index: int, nonce: str) -> tf.queue.FIFOQueue:
    """The welcome queue of the worker process that said hello as `index` with `nonce`."""
    with tf.device(PS_DEVICE):
        return _queue(f"welcome/{index}/{nonce}", 1, [tf.string, tf.float32, tf.int64])


def ps_hello_queue(ps_tasks: int) -> tf.queue.FIFOQueue:
    """Where PS tasks 1.. check in with task 0 (task index, JSON: its RunConfig and a nonce). A PS task builds this
    and its own queues only: its session sees task 0 and itself, and every op of its graph must be placeable there."""
    with tf.device(PS_DEVICE):
        return _queue("ps_hello", 2 * ps_tasks, [tf.int32, tf.string])


def ps_notice_queue(task: int) -> tf.queue.FIFOQueue:
    """Where task 0 tells PS task `task` that the run ended (JSON: the reason, "" when it finished; resumable)."""
    with tf.device(PS_DEVICE):
        return _queue(f"ps_notice/{task}", 1, [tf.string])


def ps_welcome_queue(task: int, nonce: str) -> tf.queue.FIFOQueue:
    """The queue on which PS task 0 answers the check-in of the process that came as PS task `task` with `nonce`."""
    with tf.device(PS_DEVICE):
        return _queue(f"ps_welcome/{task}/{nonce}", 1, [tf.string])


def _queue(name: str, capacity: int, dtypes: list[tf.DType]) -> tf.queue.FIFOQueue:
    return tf.queue.FIFOQueue(capacity, dtypes, shared_name=f"{PREFIX}/{name}", name=name.replace("/", "_"))


def as_list(dequeued) -> list[tf.Tensor]:
    return dequeued if isinstance(dequeued, list) else [dequeued]


def nbytes(tensors: list[tf.Tensor]) -> tf.Tensor:
    """Bytes of the tensors' payload, as put on the wire (an int64 scalar, computed in the graph)."""
    sizes = [tf.cast(tf.size(t), tf.int64) * t.dtype.size for t in tensors]
    return tf.add_n(sizes) if sizes else tf.constant(0, tf.int64)


def digest(vector: tf.Tensor, offset: int = 0) -> tf.Tensor:
    """An exact, order-independent fingerprint of a float32 vector's bits (int64).

    Integer sums are exact whatever the reduction order, so the PS and a worker agree on it exactly
    when their models agree bit for bit. Position weights 1..7 make swapped values show too. `offset`: the
    vector's position in a longer one, so the digests of a model's slices add up to the whole model's.
    """
    bits = tf.cast(tf.bitcast(vector, tf.int32), tf.int64)
    weights = tf.math.floormod(tf.range(offset, offset + tf.size(vector, out_type=tf.int64), dtype=tf.int64), 7) + 1
    return tf.reduce_sum(bits * weights)


def report_of(record: dict) -> str:
    """What a report/i record reports, in words: "epoch N" or "the end of the run"."""
    return "the end of the run" if record.get("done") else f"epoch {record.get('epoch')}"
