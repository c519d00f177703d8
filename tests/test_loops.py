"""The PS's and a worker's loops (runtime/ps_loop.py, runtime/worker_loop.py) in-process, with fakes of the
transport they talk through: which steps exchange, what is recorded and saved, how a failure stops the run.
The same loops over TensorFlow's gRPC runtime are the cluster tier's (test_runtime.py, test_recovery.py)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import data
import models
from helpers import npzio
from runtime import deadline
from runtime.config import RunConfig
from runtime.methods import RunInfo, build
from runtime.ps import WorkerFailed
from runtime.ps_loop import PSLoop, PSSettings, StartError, StartPoint, start_point
from runtime.rundir import RunDir
from runtime.worker import Pulled
from runtime.worker_loop import WorkerLoop, WorkerSettings

pytestmark = pytest.mark.unit

LENET = models.get("lenet5", 10)
STEPS, EPOCHS, WORKERS, H = 10, 2, 2, 4
EXCHANGES = [3, 7, 9, 11, 15, 19]  # H=4 over two epochs of 10: every 4th global step and each epoch's last


def method(sync_every: int = H):
    return build("localsgd", LENET.layout, {"sync_every": sync_every}, RunInfo(WORKERS, STEPS, EPOCHS, 1e-3, 0))


def config() -> RunConfig:
    return RunConfig(model="lenet5", classes=10, fingerprint=LENET.layout.fingerprint(), dataset="synthetic",
                     method="localsgd", workers=WORKERS, worker_batch=4, epochs=EPOCHS, lr=1e-3, mixup=0.0, seed=0)


DATASET = SimpleNamespace(name="synthetic", classes=10, provenance={}, test_x=np.zeros((6, 28, 28, 1), np.float32),
                          test_y=np.array([0, 1, 2, 3, 4, 5]), val_x=np.zeros((3, 28, 28, 1), np.float32),
                          val_y=np.array([0, 1, 2]), train_x=np.zeros((80, 28, 28, 1), np.float32),
                          train_y=np.arange(80) % 10)


class FakePSGraph:
    """PSGraph's face: each exchange recorded; the model a counter of exchanges; predictions right on half the test set."""

    def __init__(self):
        self.steps, self.refused = [], 0

    def run_step(self, session, step, phase, following, timeout):
        self.steps.append(step)

    def model_value(self, session):
        return np.full(LENET.layout.total, len(self.steps), np.float32)

    def state(self, session):
        return {}

    def evaluate(self, session, images):
        return np.where(np.arange(len(images)) % 2 == 0, np.arange(len(images)), 9)


class FakeLink:
    def __init__(self, fail_at_epoch=None, loss=0.5):
        self.fail_at_epoch, self.loss, self.aborted = fail_at_epoch, loss, []

    def admit(self, config, vector, start_step, method, timeout, log=print, checkpoint_every=0):
        return 0

    def reports(self, timeout, epoch):
        if epoch is not None and epoch == self.fail_at_epoch:
            raise WorkerFailed(f"worker 1 sent no report for {timeout:.0f} s", (1,))
        if epoch is None:
            return [{"worker": i, "done": True} for i in range(WORKERS)]
        return [{"worker": i, "epoch": epoch, "loss": self.loss, "train_acc": 0.5, "bytes_pushed": 100, "bytes_pulled": 100,
                 "comm_seconds": 0.1, "step_seconds": 0.2} for i in range(WORKERS)]

    def abort(self, reason, silent=(), resumable=False):
        self.aborted.append((reason, silent, resumable))


@pytest.fixture(autouse=True)
def graph_mode():
    """The PS's TensorBoard writer (runtime/events.py) is TensorFlow 1's, as in mp2_ps.py."""
    import tensorflow as tf

    with tf.Graph().as_default():
        yield


def ps_loop(tmp_path, start=None, link=None, checkpoint_every=0, epochs=EPOCHS):
    graph, link = FakePSGraph(), link or FakeLink()
    settings = PSSettings(epochs=epochs, steps_per_epoch=STEPS, step_timeout=5, connect_timeout=5,
                          checkpoint_every=checkpoint_every)
    start = start or StartPoint(LENET.init_vector(0))
    lines = []
    loop = PSLoop(method(), graph, link, None, RunDir(tmp_path), DATASET, config(), settings, start, log=lines.append)
    return loop, graph, link, lines


def test_the_ps_loop_exchanges_on_the_methods_steps_and_records_every_epoch(tmp_path):
    loop, graph, link, lines = ps_loop(tmp_path)
    assert loop.run() == 0
    assert graph.steps == EXCHANGES  # local steps gather nothing
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[0]["phases"] == {"local": 7, "sync": 3}
    assert records[0]["test_acc"] == pytest.approx(3 / 6) and records[0]["val_acc"] == pytest.approx(2 / 3)
    _, _, meta = RunDir(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")
    assert meta["steps_done"] == EPOCHS * STEPS and meta["epoch"] == EPOCHS
    summary = loop.summary(LENET, {})
    assert summary["final_test_acc"] == pytest.approx(0.5) and summary["best_val_epoch"] == 1  # ties: the earlier
    assert summary["bytes_pushed_total"] == 2 * WORKERS * 100 and summary["phases"] == {"local": 14, "sync": 6}
    assert not link.aborted


def test_the_ps_loop_saves_inside_an_epoch_once_the_next_exchange_shows_every_worker_saved(tmp_path):
    committed = []
    loop, graph, _, _ = ps_loop(tmp_path, checkpoint_every=5, epochs=1)
    save = loop.run_dir.save_checkpoint
    loop.run_dir.save_checkpoint = lambda path, v, s, meta: (committed.append((meta["steps_done"], len(graph.steps))),
                                                             save(path, v, s, meta))
    assert loop.run() == 0
    # Step 5 is local: the first exchange past it is step 7 (8 done), committed when step 9's pushes arrive.
    assert committed[:3] == [(0, 0), (8, 3), (10, 3)]


def test_the_ps_loop_resumes_inside_an_epoch_at_its_step(tmp_path):
    RunDir(tmp_path).append_metrics([{"epoch": 1, "test_acc": 0.4, "val_acc": 0.5, "wall_seconds": 3.0}])
    start = StartPoint(LENET.init_vector(0), {}, {"epoch_phases": {"local": 2, "sync": 1}, "wall_seconds": 3.0},
                       epoch=1, step=STEPS + 4)
    loop, graph, _, _ = ps_loop(tmp_path, start=start)
    assert loop.run() == 0
    assert graph.steps == [15, 19]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["phases"] == {"local": 2 + 4, "sync": 1 + 2}  # the epoch's count carried over the resume


def test_a_silent_worker_stops_the_ps_loop_resumably_and_names_it(tmp_path):
    loop, _, link, _ = ps_loop(tmp_path, link=FakeLink(fail_at_epoch=2))
    errors = []
    loop.error = errors.append
    assert loop.run() == deadline.STALLED
    assert link.aborted[0][1:] == ((1,), True)
    assert "worker 1 sent no report" in errors[0] and f"checkpoint of step {STEPS}" in errors[0]
    assert RunDir(tmp_path).interruptions()[0]["resumes_after_step"] == STEPS


def test_a_diverged_run_stops_for_good(tmp_path):
    loop, _, link, _ = ps_loop(tmp_path, link=FakeLink(loss=1e9))
    loop.error = lambda line: None
    assert loop.run() == 1
    assert "diverged" in link.aborted[0][0] and link.aborted[0][2] is False


def test_start_point_refuses_another_configuration_and_an_unasked_overwrite(tmp_path):
    run_dir = RunDir(tmp_path)
    fresh = start_point(run_dir, config(), {}, LENET.init_vector(0), resume=False, fresh=False, epochs=EPOCHS,
                        steps_per_epoch=STEPS, snapshot_dir=None)
    assert not fresh.resumed and fresh.step == 0
    with pytest.raises(StartError, match="no checkpoint"):
        start_point(run_dir, config(), {}, LENET.init_vector(0), resume=True, fresh=False, epochs=EPOCHS,
                    steps_per_epoch=STEPS, snapshot_dir=None)
    run_dir.save_checkpoint(run_dir.checkpoint, LENET.init_vector(1), {}, {"config": config().to_json(), "epoch": 1,
                                                                           "steps_done": 14})
    with pytest.raises(StartError, match="holds .*--resume"):
        start_point(run_dir, config(), {}, LENET.init_vector(0), resume=False, fresh=False, epochs=EPOCHS,
                    steps_per_epoch=STEPS, snapshot_dir=None)
    other = RunConfig(**{**config().__dict__, "lr": 0.5})
    with pytest.raises(StartError, match="--lr: the saved run has 0.001, this one has 0.5"):
        start_point(run_dir, other, {}, LENET.init_vector(0), resume=True, fresh=False, epochs=EPOCHS,
                    steps_per_epoch=STEPS, snapshot_dir=None)
    resumed = start_point(run_dir, config(), {}, LENET.init_vector(0), resume=True, fresh=False, epochs=EPOCHS,
                          steps_per_epoch=STEPS, snapshot_dir=None, log=lambda s: None)
    assert resumed.resumed and (resumed.epoch, resumed.step) == (1, 14)
    assert np.array_equal(resumed.vector, LENET.init_vector(1))


# --- the worker's loop ------------------------------------------------------------------------------
class FakeWorkerGraph:
    """WorkerGraph's face: a push and a pull per exchanging step, a local step otherwise; the digest of the
    PS's model is the worker's own unless `differ_at` says otherwise."""

    def __init__(self, start=0, differ_at=None):
        self.start, self.differ_at, self.retries, self.side = start, differ_at, 0, None
        self.pushed, self.local, self.reports, self.restored = [], [], [], []

    def join(self, session, config_json, timeout, address):
        return self.start, 0, 0

    def train_locally(self, session, images, labels, timeout, traced):
        self.local.append(len(images))
        return 1.0, 0.25

    def push(self, session, phase, images, labels, timeout, traced, step):
        self.pushed.append(step)
        return 2.0, 0.75, 40

    def pull(self, session, phase, timeout, traced, step):
        return Pulled(received=60, sent=0, next_phase=0, theirs=7 if step == self.differ_at else 1, mine=1)

    def report(self, session, record, timeout):
        self.reports.append(record)

    def state(self, session):
        return {"state/000/x": np.zeros(2, np.float32)}

    def restore(self, session, arrays, where):
        self.restored.append(where)


def worker_loop(tmp_path, graph, verify_sync=True):
    schedule = data.Schedule(len(DATASET.train_x), WORKERS, 4, 0)
    assert schedule.steps_per_epoch == STEPS
    settings = WorkerSettings(epochs=EPOCHS, seed=0, mixup=0.0, step_timeout=5, connect_timeout=5,
                              verify_sync=verify_sync, trace_steps=0)
    loop = WorkerLoop(graph, None, method(), schedule, DATASET, 1, settings, RunDir(tmp_path), config().to_json(),
                      "127.0.0.1:1", log=lambda s: None)
    return loop


@pytest.fixture
def listening():
    """The loop waits for the PS's port before it joins: a listening socket stands in."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


def test_the_worker_loop_pushes_on_exchanging_steps_trains_alone_between_and_reports(tmp_path, listening):
    graph = FakeWorkerGraph()
    loop = worker_loop(tmp_path, graph)
    loop.ps_addresses = (listening,)
    assert loop.run() == 0
    assert graph.pushed == EXCHANGES and len(graph.local) == 2 * STEPS - len(EXCHANGES)
    epochs, done = graph.reports[:-1], graph.reports[-1]
    assert done == {"worker": 1, "done": True}
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[0]["steps_verified_in_sync"] == 3
    assert epochs[0]["bytes_pushed"] == 40 * 3 and epochs[0]["bytes_pulled"] == 60 * 3
    assert epochs[0]["loss"] == pytest.approx((7 * 1.0 + 3 * 2.0) / STEPS)
    arrays, meta = npzio.read(tmp_path / "worker-1-state.npz")
    assert meta["steps_done"] == EPOCHS * STEPS and "state/000/x" in arrays
    assert [json.loads(line)["epoch"] for line in (tmp_path / "worker-1.jsonl").read_text().splitlines()] == [1, 2]


def test_the_worker_loop_stops_when_its_model_differs_from_the_pss(tmp_path, listening):
    graph = FakeWorkerGraph(differ_at=15)
    loop = worker_loop(tmp_path, graph)
    loop.ps_addresses, errors = (listening,), []
    loop.error = errors.append
    assert loop.run() == 1
    assert "after step 16 this worker's model differs from the PS's" in errors[0]
    assert [r["epoch"] for r in graph.reports] == [1]


def test_the_worker_loop_resumes_with_its_saved_state(tmp_path, listening):
    first = worker_loop(tmp_path, FakeWorkerGraph())
    first.ps_addresses = (listening,)
    assert first.run() == 0
    graph = FakeWorkerGraph(start=STEPS)  # the PS resumes after epoch 1: this worker's state of step 10 is in .prev
    loop = worker_loop(tmp_path, graph)
    loop.ps_addresses = (listening,)
    assert loop.run() == 0
    assert graph.restored and graph.pushed == [11, 15, 19]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "worker-1.jsonl").read_text().splitlines()] == [1, 2]
