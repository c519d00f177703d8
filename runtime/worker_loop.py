"""A worker's run as an importable part: join the PS, train on this worker's slice of every global batch,
exchange as the method says, report each epoch.

    loop = WorkerLoop(graph, session, method, schedule, dataset, index, settings, run_dir, log=log)
    code = loop.run()   # 0 when the PS said the run is done; else the exit code (deadline.STALLED: resumable)

The loop talks to the PS only through `graph` (runtime.worker.WorkerGraph: join, push, pull, train_locally,
report, state), so a test can drive it with a fake, and mp2_worker.py, benchmarks/ps_step.py (its workers'
training a stand-in: WorkerGraph's `simulated`) and the tests run this one copy.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import data
from helpers import npzio
from runtime import checkpoints, cluster, deadline
from runtime.methods.base import LOCAL, Method
from runtime.progress import Progress
from runtime.rundir import RunDir
from runtime.worker import RunStopped, StepTrace


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker's loop needs of its flags."""

    epochs: int             # --epochs
    seed: int               # --seed: mixup's draws per worker and epoch
    mixup: float            # --mixup alpha (0: off)
    step_timeout: float     # seconds a push, a pull or a report may take (--step-timeout)
    connect_timeout: float  # seconds to wait for the PS (--connect-timeout)
    verify_sync: bool       # check the PS's digest after every exchange (--verify-sync)
    trace_steps: int        # record the first N steps (--trace-steps)


class WorkerLoop:
    def __init__(self, graph, session, method: Method, schedule: data.Schedule, dataset, index: int,
                 settings: WorkerSettings, run_dir: RunDir, config_json: str, ps_address: str | tuple[str, ...],
                 log: Callable[[str], None] = print, error: Callable[[str], None] | None = None) -> None:
        self.graph, self.session, self.method, self.schedule = graph, session, method, schedule
        self.dataset, self.index, self.settings, self.run_dir = dataset, index, settings, run_dir
        # Every PS task's address (task 0 first), or task 0's alone.
        self.ps_addresses = (ps_address,) if isinstance(ps_address, str) else tuple(ps_address)
        self.ps_address = self.ps_addresses[0]
        self.config_json, self.log, self.error = config_json, log, error or log
        self.log_path = run_dir.path / f"worker-{index}.jsonl"
        self.states = checkpoints.WorkerStateFiles(run_dir.path, index)
        self.trace = StepTrace(run_dir.path / f"trace-worker-{index}.npz", settings.trace_steps)

    def run(self) -> int:
        """Join, train every epoch, say done; 0, or the exit code with the reason logged."""
        try:
            self._run()
            return 0
        except RunStopped as e:
            # With several PS tasks, one that died is named, whatever call of this worker noticed first.
            gone = cluster.gone_ps_tasks(self.ps_addresses)
            self.error(f"error: {e}" + "".join(f" — PS task {k} at {self.ps_addresses[k]} is not reachable (it died or "
                                               f"was stopped)" for k in gone if f"PS task {k}" not in str(e)))
            return deadline.STALLED if e.resumable else 1
        except cluster.ClusterError as e:
            self.error(f"error: {e}")
            return 1
        except OSError as e:
            self.error(f"error: cannot write {self.run_dir.path}: {e}")
            return 1
        except KeyboardInterrupt:
            self.error("interrupted")
            return 130

    def _run(self) -> None:
        s, graph, session = self.settings, self.graph, self.session
        for k, address in enumerate(self.ps_addresses):
            cluster.wait_for_port(address, s.connect_timeout, "the PS" if k == 0 else f"PS task {k}")
        start, phase, checkpoint_every = graph.join(session, self.config_json, s.connect_timeout, self.ps_address)
        first_epoch, first_step = divmod(start, self.schedule.steps_per_epoch)
        self.log(f"joined; {self.schedule.steps_per_epoch} steps per epoch, starting at step {start}; devices here: "
                 f"{', '.join(cluster.devices())} (training on {'GPU:0' if 'GPU:0' in cluster.devices() else 'CPU'})")
        if not start:  # a fresh run: an earlier run's record of this worker is kept aside, never overwritten
            aside = self.run_dir.set_aside([self.log_path, *self.states.paths, self.trace.path])
            if aside:
                self.log(f"an earlier run's record of this worker is now in {aside}")
        kept = ([json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]
                if start and self.log_path.exists() else [])
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in kept if r["epoch"] <= first_epoch))
        carried = {}  # a checkpoint inside an epoch: what that epoch had counted so far
        if start:  # resumed: the method's and optimizer's state as saved at that step, if this host has it
            try:
                arrays, saved = self.states.read(start)
                graph.restore(session, arrays, f"{self.states.latest.parent}/worker-{self.index}-state*.npz (step {start})")
                carried = saved.get("epoch_totals", {}) if first_step else {}
            except (npzio.NpzError, ValueError) as e:
                self.log(f"warning: optimizer and method state start afresh ({e})")
        for epoch in range(first_epoch, s.epochs):
            begin = first_step if epoch == first_epoch else 0
            phase = self._epoch(epoch, begin, phase, carried if begin else {}, checkpoint_every)
        graph.report(session, {"worker": self.index, "done": True}, s.step_timeout)

    def _epoch(self, epoch: int, begin: int, phase: int, carried: dict, checkpoint_every: int) -> int:
        s, graph, session, schedule, ds = self.settings, self.graph, self.session, self.schedule, self.dataset
        self.method.worker_epoch_start(graph.side, session, epoch)
        rng = np.random.default_rng([s.seed, self.index, epoch])  # mixup draws: per worker and epoch, so a resume repeats them
        for step in range(begin):  # a resume inside the epoch: the draws of the steps already done, made again
            idx = schedule.worker_indices(epoch, step, self.index)
            data.mixup(ds.train_x[idx], ds.train_y[idx], ds.classes, s.mixup, rng)
        totals = dict(loss=0.0, acc=0.0, pushed=0, pulled=0, comm=0.0, step=0.0, verified=0, retries=0)
        totals.update(carried)
        retries_before = graph.retries
        progress = Progress(schedule.steps_per_epoch, f"worker {self.index} epoch {epoch + 1}/{s.epochs}")
        for step in range(begin, schedule.steps_per_epoch):
            g = epoch * schedule.steps_per_epoch + step
            t0 = time.perf_counter()
            idx = schedule.worker_indices(epoch, step, self.index)
            images, labels = data.mixup(ds.train_x[idx], ds.train_y[idx], ds.classes, s.mixup, rng)
            traced = [] if g < s.trace_steps else None
            if self.method.is_local(g):  # no exchange: train alone, the PS expects nothing
                loss, acc = graph.train_locally(session, images, labels, s.step_timeout, traced)
                t2 = t1 = time.perf_counter()
                if traced is not None:
                    self.trace.add(g, LOCAL, traced)
            else:
                loss, acc, sent = graph.push(session, phase, images, labels, s.step_timeout, traced, step=g)
                t1 = time.perf_counter()
                pulled = graph.pull(session, phase, s.step_timeout, traced, step=g)  # the barrier (and any further exchanges)
                t2 = time.perf_counter()
                if s.verify_sync:
                    if pulled.theirs != pulled.mine:
                        raise RunStopped(f"after step {g + 1} this worker's model differs from the PS's (digest "
                                         f"{pulled.mine} against {pulled.theirs}): the method's update is not "
                                         f"reproduced exactly")
                    totals["verified"] += 1
                if traced is not None:
                    self.trace.add(g, phase, traced)
                phase = pulled.next_phase
                totals["pushed"] += sent + pulled.sent
                totals["pulled"] += pulled.received
            totals["loss"] += loss
            totals["acc"] += acc
            totals["comm"] += t2 - t1
            totals["step"] += t2 - t0
            if step + 1 < schedule.steps_per_epoch and checkpoints.due(self.method, g, checkpoint_every,
                                                                       schedule.steps_per_epoch):
                so_far = {**totals, "retries": totals["retries"] + graph.retries - retries_before}
                self.states.write(g + 1, graph.state(session), {"epoch": epoch, "epoch_totals": so_far})
            progress.update(step + 1, {"loss": loss, "acc": acc})
        steps = schedule.steps_per_epoch
        record = {
            "worker": self.index, "epoch": epoch + 1, "loss": totals["loss"] / steps, "train_acc": totals["acc"] / steps,
            "bytes_pushed": totals["pushed"], "bytes_pulled": totals["pulled"],
            "comm_seconds": totals["comm"], "step_seconds": totals["step"], "steps": steps,
            "steps_verified_in_sync": totals["verified"], "retries": totals["retries"] + graph.retries - retries_before,
        }
        self.states.write((epoch + 1) * steps, graph.state(session), {"epoch": epoch + 1})
        self.trace.write()
        graph.report(session, record, s.step_timeout)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.log(f"epoch {epoch + 1}/{s.epochs} loss {record['loss']:.4f} train_acc {record['train_acc']:.4f} "
                 f"comm {record['comm_seconds']:.1f}s")
        return phase
