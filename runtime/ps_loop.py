"""The PS's run as importable parts: where it starts (`start_point`), its step loop (`PSLoop`), its summary.

    start = start_point(run_dir, config, ps_inputs, fresh_vector, resume=..., fresh=..., ...)
    loop = PSLoop(method, graph, link, session, run_dir, dataset, config, settings, start, log=log)
    code = loop.run()          # admission, every epoch's steps, evaluation and checkpoints, the workers' "done"
    summary = loop.summary()   # the run's record (summary.json)

The loop talks to the workers only through `graph` (runtime.ps.PSGraph: one session run per exchange) and
`link` (runtime.ps.PSLink: admission, reports, aborting), so a test can drive it with fakes of both, and
mp2_ps.py, the benchmarks and the tests run this one copy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from data.validation import select_epoch
from helpers import npzio
from paramset import is_dataset
from runtime import checkpoints, cluster, deadline, tferrors
from runtime.config import RunConfig
from runtime.events import EpochEvents
from runtime.methods.base import Method
from runtime.metrics import classification_report, epoch_record, finite_json
from runtime.progress import Progress
from runtime.ps import Diverged, WorkerFailed, loss_diverged
from runtime.rundir import RunDir


class StartError(Exception):
    """The run cannot start from what --out holds; the message says what to do."""


@dataclass(frozen=True)
class PSSettings:
    """What the PS's loop needs of its flags."""

    epochs: int             # epochs of the run (--epochs)
    steps_per_epoch: int    # from the data, the worker count and --worker-batch
    step_timeout: float     # seconds a step, a report or an evaluation may take (--step-timeout)
    connect_timeout: float  # seconds to wait for every worker at admission (--connect-timeout)
    checkpoint_every: int   # steps between checkpoints inside an epoch; 0: epoch ends only (--checkpoint-every)


@dataclass
class StartPoint:
    """Where the run starts: a fresh model at step 0, or a checkpoint's model and state."""

    vector: np.ndarray
    state: dict[str, np.ndarray] | None = None  # the PS's saved state (None: fresh)
    meta: dict = field(default_factory=dict)     # the checkpoint's metadata (empty: fresh)
    epoch: int = 0                               # epochs finished
    step: int = 0                                # steps done

    @property
    def resumed(self) -> bool:
        return self.state is not None


def start_point(run_dir: RunDir, config: RunConfig, ps_inputs: dict, fresh_vector: np.ndarray, *, resume: bool,
                fresh: bool, epochs: int, steps_per_epoch: int, snapshot_dir: Path | None,
                log: Callable[[str], None] = print) -> StartPoint | None:
    """The start: the checkpoint in --out (--resume, checked against this run's flags), or a fresh one (an
    earlier record set aside with --fresh, refused without it). None: the saved run has finished its epochs."""
    if resume:
        if not run_dir.checkpoint.exists():
            raise StartError(f"--resume: no checkpoint in {run_dir.path} (nothing to resume; drop --resume)")
        try:
            vector, state, saved = run_dir.load_checkpoint(run_dir.checkpoint)
        except npzio.NpzError as e:
            raise StartError(f"--resume: {e}; start afresh without --resume") from None
        # --epochs may grow on resume; every other flag must be the saved run's.
        diffs = config.differences(RunConfig.from_json(saved["config"]), "the saved run", "this one", ignore=("epochs",))
        diffs += [f"{k}: the saved run used {v!r}, this one {ps_inputs.get(k)!r}"
                  for k, v in saved.get("ps_inputs", {}).items() if ps_inputs.get(k) != v]
        if diffs:
            raise StartError(f"--resume: {run_dir.checkpoint} belongs to another configuration: " + "; ".join(diffs))
        epoch = saved["epoch"]  # epochs finished; a checkpoint taken inside an epoch says how far it went
        if epoch > epochs:
            raise StartError(f"--resume: the saved run has already done {epoch} epochs; --epochs must be at least that")
        if epoch == epochs:
            log(f"the run in {run_dir.path} has already finished its {epochs} epochs; nothing to do "
                f"(raise --epochs to train on)")
            return None
        step = saved.get("steps_done", epoch * steps_per_epoch)
        log(f"resuming after epoch {epoch}" + (f", step {step}" if step % steps_per_epoch else ""))
        return StartPoint(vector, state, saved, epoch, step)
    earlier = run_dir.describe_record()
    old_snapshots = snapshot_dir is not None and is_dataset(snapshot_dir)
    if (earlier or old_snapshots) and not fresh:
        what = earlier or f"snapshots of an earlier run in {snapshot_dir}"
        raise StartError(f"--out {run_dir.path} holds {what}: continue it with --resume, keep it aside and start "
                         f"afresh with --fresh, or choose another --out")
    if fresh:
        own_snapshots = [snapshot_dir] if old_snapshots and snapshot_dir.parent == run_dir.path else []
        if old_snapshots and not own_snapshots:
            raise StartError(f"{snapshot_dir} already holds snapshots of an earlier run; --fresh sets aside only what "
                             f"is inside --out: move them yourself or choose another --snapshot-dir")
        aside = run_dir.set_aside(run_dir.record_files() + own_snapshots)
        if aside:
            log(f"--fresh: the earlier run's records are now in {aside}")
    return StartPoint(fresh_vector)


class PSLoop:
    """The PS's run: admission, each epoch's steps (the barrier, the method's update, its schedule), the epoch's
    reports, evaluation, records and checkpoints, then the workers' "done"."""

    def __init__(self, method: Method, graph, link, session, run_dir: RunDir, dataset, config: RunConfig,
                 settings: PSSettings, start: StartPoint, collector=None, log: Callable[[str], None] = print,
                 error: Callable[[str], None] | None = None, tasks=None) -> None:
        self.method, self.graph, self.link, self.session = method, graph, link, session
        self.tasks = tasks  # the other PS tasks (runtime.ps_tasks.ShardTasks), told when the run ends; None: one PS
        self.run_dir, self.dataset, self.config, self.settings = run_dir, dataset, config, settings
        self.start, self.collector, self.log, self.error = start, collector, log, error or log
        self.meta = {"config": config.to_json(), "ps_inputs": method.ps_inputs()}
        every = settings.checkpoint_every if method.saves_mid_epoch() else 0
        if settings.checkpoint_every and not every:
            log(f"--checkpoint-every: {config.method} saves at epoch ends only (its checkpoint waits for work in flight)")
        self.checkpoint_every = every
        self.history: list[dict] = []
        self.committed = self.step = start.step  # the steps done by the checkpoint on disk; the step under way
        self.pending: dict | None = None  # a checkpoint taken inside an epoch, written once every worker saved its side
        self.started = time.monotonic()
        deadline.ON_GIVE_UP.append(lambda why: run_dir.note_interruption(self.step, self.committed, why))

    # --- checkpoints ---------------------------------------------------------------------------
    def _take_checkpoint(self, steps_done: int, epoch_phases: dict) -> dict:
        method_arrays, method_meta = self.method.checkpoint(self.session)
        return {"vector": self.graph.model_value(self.session),
                "state": {**self.graph.state(self.session), **{f"method/{k}": v for k, v in method_arrays.items()}},
                "meta": {**self.meta, "epoch": steps_done // self.settings.steps_per_epoch, "steps_done": steps_done,
                         "epoch_phases": dict(epoch_phases), "wall_seconds": time.monotonic() - self.started,
                         "method_state": method_meta}}

    def _commit(self, taken: dict) -> None:
        if self.collector:  # the snapshots taken so far belong to the record the checkpoint restores
            self.collector.flush()
        self.run_dir.save_checkpoint(self.run_dir.checkpoint, taken["vector"], taken["state"], taken["meta"])
        self.committed = taken["meta"]["steps_done"]

    # --- the run ---------------------------------------------------------------------------------
    def run(self) -> int:
        """The whole run; 0 when it finished, else the exit code after telling every worker (and every other PS
        task) why it stopped (deadline.STALLED: a resume from the intact checkpoint can finish it)."""
        try:
            self._run()
            return 0
        except (WorkerFailed, Diverged) as e:
            self.method.close()
            lost = self.tasks.lost() if self.tasks and isinstance(e, WorkerFailed) and e.mid_run else ""
            if lost:  # the workers waited on a PS task that is gone, not the other way round
                return self._stop_on_error(lost)
            # A step or report that did not come is a stall a resume can cure; refusals at the start and divergence are not.
            resumable = isinstance(e, WorkerFailed) and e.mid_run
            if resumable:
                deadline.evidence()
                self.run_dir.note_interruption(self.step, self.committed, str(e))
            kept = f" (the checkpoint of step {self.committed} in {self.run_dir.path} is intact)" if self.committed else ""
            self.error(f"error: {e}; stopping the run{kept}")
            self._abort(str(e), silent=getattr(e, "workers", ()), resumable=resumable)  # a silent worker never reads why
            return deadline.STALLED if resumable else 1
        except tf.errors.OpError as e:  # anything else TensorFlow raises mid-run: still one line, and the workers told
            self.method.close()
            lost = self.tasks.lost(e.message or "") if self.tasks else ""
            return self._stop_on_error(lost or f"TensorFlow error in the PS: {type(e).__name__}: {tferrors.explain(e)}")
        except OSError as e:  # a checkpoint or record that cannot be written (full disk, permissions)
            self.error(f"error: cannot write the run's files in {self.run_dir.path}: {e}; stopping the run")
            self._abort(f"the PS cannot write its files ({e.strerror or e})")
            return 1
        except KeyboardInterrupt:
            self.method.close()
            self._abort("the PS was interrupted")
            self.error("interrupted; the workers were told to stop")
            return 130

    def _stop_on_error(self, reason: str) -> int:
        deadline.evidence()
        self.run_dir.note_interruption(self.step, self.committed, reason)
        self.error(f"error: {reason}; stopping the run (the checkpoint of step {self.committed} is intact)")
        self._abort(reason, resumable=True)
        return deadline.STALLED

    def _abort(self, reason: str, silent: tuple[int, ...] = (), resumable: bool = False) -> None:
        if self.tasks:
            self.tasks.release(reason, resumable)
        self.link.abort(reason, silent=silent, resumable=resumable)

    def _run(self) -> None:
        s, start, method = self.settings, self.start, self.method
        phase = self.link.admit(self.config, start.vector, start.step, method, s.connect_timeout, log=self.log,
                                checkpoint_every=self.checkpoint_every)
        self.history = self.run_dir.start(resumed_through=start.epoch if start.resumed else None)  # every worker came
        before = start.meta.get("wall_seconds", self.history[-1]["wall_seconds"] if self.history else 0.0)
        self.started = time.monotonic() - (before if start.resumed else 0.0)
        if not start.resumed:  # a checkpoint from the first step on: a run stopped at any point can be resumed
            self.run_dir.interruptions_file.unlink(missing_ok=True)
            self._commit(self._take_checkpoint(0, {}))
        events = EpochEvents(self.run_dir.path)
        try:
            for epoch in range(start.epoch, s.epochs):
                phase = self._epoch(epoch, phase, events)
            self.link.reports(s.step_timeout, None)  # every worker's "done"
        finally:
            events.close()

    def _epoch(self, epoch: int, phase: int, events: EpochEvents) -> int:
        s, method, graph, session = self.settings, self.method, self.graph, self.session
        progress = Progress(s.steps_per_epoch, f"ps epoch {epoch + 1}/{s.epochs} step")
        resumed_inside = epoch == self.start.epoch and self.start.step % s.steps_per_epoch
        phases = dict(self.start.meta.get("epoch_phases", {})) if resumed_inside else {}
        for step in range(self.start.step % s.steps_per_epoch if resumed_inside else 0, s.steps_per_epoch):
            self.step = g = epoch * s.steps_per_epoch + step
            if method.is_local(g):  # the workers train alone: nothing to gather
                phases["local"] = phases.get("local", 0) + 1
            else:
                upcoming = method.next_exchange(g + 1)  # the reply announces the phase of the next step that exchanges
                following = method.next_phase(upcoming) if upcoming is not None else phase
                if following != phase:
                    self.log(f"step {g + 1}: workers switch from phase {method.phase_name(phase)} to "
                             f"{method.phase_name(following)}")
                graph.run_step(session, g, phase, following, s.step_timeout)
                if self.pending:  # this step's pushes came after every worker saved the pending checkpoint's state
                    self._commit(self.pending)
                    self.pending = None
                method.after_step(session, g, phase)
                phases[method.phase_name(phase)] = phases.get(method.phase_name(phase), 0) + 1
                phase = following
            if self.collector:
                self.collector.after_step(g, epoch, lambda: graph.model_value(session))
            if step + 1 < s.steps_per_epoch and checkpoints.due(method, g, self.checkpoint_every, s.steps_per_epoch):
                self.pending = self._take_checkpoint(g + 1, phases)
            progress.update(step + 1, {})
        self.step = (epoch + 1) * s.steps_per_epoch - 1
        self._end_epoch(epoch, phases, events)
        return phase

    def _end_epoch(self, epoch: int, phases: dict, events: EpochEvents) -> None:
        s, data = self.settings, self.dataset
        reports = self.link.reports(s.step_timeout, epoch + 1)
        diverged = loss_diverged(reports, epoch + 1)
        if diverged:
            raise Diverged(diverged)
        if self.collector:
            self.collector.flush()
        test = classification_report(data.test_y, self.graph.evaluate(self.session, data.test_x), data.classes)
        record = epoch_record(epoch + 1, test, reports, phases, time.monotonic() - self.started)
        record["val_acc"] = (classification_report(data.val_y, self.graph.evaluate(self.session, data.val_x),
                                                   data.classes)["accuracy"] if len(data.val_y) else None)
        record["events"] = self.method.drain_events()
        # best.npz: the epoch of the best validation accuracy (the earlier of equals), never chosen on the test set.
        best_before = max((r["val_acc"] for r in self.history if r.get("val_acc") is not None), default=None)
        self.history.append(record)
        self.run_dir.append_metrics([finite_json(record)])
        events.write(epoch + 1, {k: record[k] for k in ("test_acc", "val_acc", "f1", "loss", "train_acc", "bytes_pushed",
                                                        "bytes_pulled", "comm_seconds", "step_seconds")
                                 if record[k] is not None})
        taken = self._take_checkpoint((epoch + 1) * s.steps_per_epoch, {})  # every worker reported: saved
        self.pending = None
        taken["meta"].update(test_acc=record["test_acc"], val_acc=record["val_acc"])
        self._commit(taken)
        if record["val_acc"] is not None and (best_before is None or record["val_acc"] > best_before):
            self.run_dir.save_checkpoint(self.run_dir.best, taken["vector"], {},
                                         {k: v for k, v in taken["meta"].items() if k not in ("method_state", "epoch_phases")})
        val = f" val_acc {record['val_acc']:.4f}" if record["val_acc"] is not None else ""
        self.log(f"epoch {epoch + 1}/{s.epochs} test_acc {record['test_acc']:.4f}{val} loss {record['loss']:.4f} "
                 f"pushed {record['bytes_pushed']:,} B ({time.monotonic() - self.started:.1f}s)")

    # --- the record ------------------------------------------------------------------------------
    def summary(self, model, provenance: dict) -> dict:
        """The run's summary.json: accuracy by the final epoch and at the best validation epoch (never the best test
        epoch, which is kept for reference only), bytes both ways, time, what the method did."""
        history, s, method = self.history, self.settings, self.method
        curve = [r["test_acc"] for r in history]
        val_curve = [r.get("val_acc") for r in history]  # an epoch resumed from an older record may lack it
        best_val = select_epoch(val_curve) if val_curve and None not in val_curve else None
        return finite_json({
            "method": self.config.method, "method_options": method.opts.to_json(), "model": model.name,
            "dataset": self.dataset.name, "data": self.dataset.provenance, "workers": self.config.workers,
            "epochs": s.epochs, "steps": s.epochs * s.steps_per_epoch, "steps_per_epoch": s.steps_per_epoch,
            "lr": method.run.lr, "ps_devices": cluster.devices(), "total_params": model.layout.total,
            "pushed_params": model.layout.pushed, "pushed_layers": model.layout.pushed_layers(),
            # Ranked by final_test_acc or test_acc_at_best_val; best_test_acc selects on the test set (for reference only).
            "final_test_acc": curve[-1], "test_acc_at_best_val": None if best_val is None else curve[best_val],
            "best_val_epoch": None if best_val is None else best_val + 1,
            "best_val_acc": None if best_val is None else val_curve[best_val],
            "test_acc_by_epoch": curve, "val_acc_by_epoch": val_curve, "best_test_acc": max(curve),
            "bytes_pushed_total": int(sum(r["bytes_pushed"] for r in history)),
            "bytes_pulled_total": int(sum(r["bytes_pulled"] for r in history)),
            "comm_seconds_mean": float(np.mean([r["comm_seconds"] for r in history])),
            "wall_seconds": time.monotonic() - self.started, "resumed_from_epoch": self.start.epoch,
            "resumed_from_step": self.start.step,
            "phases": {k: sum(r["phases"].get(k, 0) for r in history) for k in {k for r in history for k in r["phases"]}},
            "method_stats": method.stats(), "ps_inputs": self.meta["ps_inputs"],
            "recoveries": self.run_dir.interruptions(), "checkpoint_every": self.checkpoint_every,
            "refused_calls_rerun": getattr(self.graph, "refused", 0),
            "snapshots": len(self.collector.writer) if self.collector else 0, "provenance": provenance,
        })
