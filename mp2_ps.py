"""The MP² parameter server: the step barrier, aggregation (and prediction), evaluation and the run's records.

    python mp2_ps.py --ps_hosts 10.0.0.1:2222 --worker_hosts 10.0.0.2:2222,10.0.0.3:2222 \
        --model lenet5 --dataset fashion_mnist --method mp2 --predictor predictors/lenet5-fashion_mnist
"""
import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import data
import npzio
import provenance
from data.validation import select_epoch
from paramset import ParamSetError, ParamSetWriter, SnapshotCollector, is_dataset
from predictor import CheckpointError
from runtime import checkpoints, cluster, deadline, flags, tferrors
from runtime.config import RunConfig
from runtime.events import EpochEvents
from runtime.metrics import classification_report, epoch_record, finite_json
from runtime.progress import Progress
from runtime.ps import Diverged, PSGraph, PSLink, WorkerFailed, loss_diverged
from npzio import write_json
from runtime.rundir import RunDir
from runtime.wire import Wire


def fail(message) -> None:
    sys.exit(f"ps: error: {message}")


# --- flags ---------------------------------------------------------------------------------------
args = flags.ps_parser(__doc__).parse_args()
deadline.WHO = "ps"
try:
    spec, _ = cluster.resolve(args, "ps")
    dataset, model = flags.load_data_and_model(args)
    n_workers = len(spec.workers)
    steps_per_epoch = data.Schedule(len(dataset.train_x), n_workers, args.worker_batch, args.seed).steps_per_epoch
    method = flags.build_method(args, model, n_workers, steps_per_epoch)
    method.prepare_ps(flags.ps_context(args), dataset, log=lambda s: print(f"ps: {s}", flush=True))
except (cluster.ClusterError, data.DataError, CheckpointError, ValueError) as e:
    fail(e)
config = flags.run_config(args, model, dataset, n_workers, method)
try:
    run_dir = RunDir(args.out)
except OSError as e:
    fail(f"cannot create the run directory --out {args.out}: {e.strerror or e}; choose a directory you can write")
origin = provenance.record(run_dir.path)  # taken at the start: the code and command that ran
total_steps = args.epochs * steps_per_epoch
meta = {"config": config.to_json(), "ps_inputs": method.ps_inputs()}

# --- the starting model: fresh, or the last saved epoch ------------------------------------------
history, start_epoch, start_step, saved_state = [], 0, 0, None
vector = model.init_vector(args.seed)
snapshot_dir = Path(args.snapshot_dir or run_dir.path / "snapshots")
if args.resume:
    if not run_dir.checkpoint.exists():
        fail(f"--resume: no checkpoint in {run_dir.path} (nothing to resume; drop --resume)")
    try:
        vector, saved_state, saved = run_dir.load_checkpoint(run_dir.checkpoint)
    except npzio.NpzError as e:
        fail(f"--resume: {e}; start afresh without --resume")
    # --epochs may grow on resume; every other flag must be the saved run's.
    diffs = config.differences(RunConfig.from_json(saved["config"]), "the saved run", "this one", ignore=("epochs",))
    diffs += [f"{k}: the saved run used {v!r}, this one {meta['ps_inputs'].get(k)!r}"
              for k, v in saved.get("ps_inputs", {}).items() if meta["ps_inputs"].get(k) != v]
    if diffs:
        fail(f"--resume: {run_dir.checkpoint} belongs to another configuration: " + "; ".join(diffs))
    start_epoch = saved["epoch"]  # epochs finished; a checkpoint taken inside an epoch says how far it went
    if start_epoch > args.epochs:
        fail(f"--resume: the saved run has already done {start_epoch} epochs; --epochs must be at least that")
    if start_epoch == args.epochs:
        print(f"ps: the run in {run_dir.path} has already finished its {args.epochs} epochs; nothing to do "
              f"(raise --epochs to train on)", flush=True)
        sys.exit(0)
    start_step = saved.get("steps_done", start_epoch * steps_per_epoch)
    print(f"ps: resuming after epoch {start_epoch}" + (f", step {start_step}" if start_step % steps_per_epoch else ""),
          flush=True)
else:
    earlier = run_dir.describe_record()
    old_snapshots = args.snapshot_every > 0 and is_dataset(snapshot_dir)
    if (earlier or old_snapshots) and not args.fresh:
        what = earlier or f"snapshots of an earlier run in {snapshot_dir}"
        fail(f"--out {run_dir.path} holds {what}: continue it with --resume, keep it aside and start afresh "
             f"with --fresh, or choose another --out")
    if args.fresh:
        own_snapshots = [snapshot_dir] if old_snapshots and snapshot_dir.parent == run_dir.path else []
        if old_snapshots and not own_snapshots:
            fail(f"{snapshot_dir} already holds snapshots of an earlier run; --fresh sets aside only what is inside "
                 f"--out: move them yourself or choose another --snapshot-dir")
        aside = run_dir.set_aside(run_dir.record_files() + own_snapshots)
        if aside:
            print(f"ps: --fresh: the earlier run's records are now in {aside}", flush=True)

# --- build ---------------------------------------------------------------------------------------
tf.compat.v1.disable_eager_execution()
try:
    server = cluster.start_server(spec, "ps", 0, args.threads)
    session = cluster.session(server, "ps", 0, args.threads)
    wire = Wire(n_workers, method.up_dtypes, method.down_dtypes)
    graph = PSGraph(model, method, wire, cluster.PS_DEVICE, args.verify_sync)
    link = PSLink(session, wire)
    graph.initialise(session, vector, saved_state, str(run_dir.checkpoint))
    if args.resume:  # what the method keeps outside its state variables (online MP²'s schedule, predictors)
        method.restore(session, npzio.under(saved_state, "method/"), saved.get("method_state", {}), start_step)
    collector = None
    if args.snapshot_every > 0:
        writer = ParamSetWriter(snapshot_dir, model.layout, dataset.name)
        if args.resume:  # the stretch after the checkpoint is abandoned, and will be run again
            dropped = writer.keep_through_step(start_step - 1)
            if dropped:
                print(f"ps: dropped {dropped} snapshots taken after the checkpoint", flush=True)
        collector = SnapshotCollector(session, cluster.PS_DEVICE, model, dataset, writer, args.snapshot_every,
                                      args.seed, args.snapshot_eval_images, regular=args.snapshot_regular)
except (cluster.ClusterError, CheckpointError, ParamSetError, ValueError) as e:
    fail(e)
print(f"ps: {config.method} on {model.name}/{dataset.name}: {model.layout.total:,} parameters "
      f"({model.layout.pushed:,} in the pushed group: {', '.join(model.layout.pushed_layers())}), {n_workers} workers, "
      f"{steps_per_epoch} steps per epoch; listening on {spec.ps[0]}; devices here: {', '.join(cluster.devices())}", flush=True)
print(f"ps: data: {dataset.provenance.get('origin')} {'; '.join(dataset.provenance.get('transforms', []))}", flush=True)

# --- loop ----------------------------------------------------------------------------------------
events = EpochEvents(run_dir.path)
log = lambda s: print(f"ps: {s}", flush=True)  # noqa: E731
every = args.checkpoint_every if method.saves_mid_epoch() else 0
if args.checkpoint_every and not every:
    log(f"--checkpoint-every: {config.method} saves at epoch ends only (its checkpoint waits for work in flight)")
committed, s = start_step, start_step  # the steps done by the checkpoint on disk; the step under way
pending = None  # a checkpoint taken inside an epoch, written once every worker has saved its side (runtime/checkpoints.py)
deadline.ON_GIVE_UP.append(lambda why: run_dir.note_interruption(s, committed, why))  # a call stuck past its deadline


def take_checkpoint(steps_done: int, epoch_phases: dict) -> dict:
    method_arrays, method_meta = method.checkpoint(session)
    return {"vector": graph.model_value(session),
            "state": {**graph.state(session), **{f"method/{k}": v for k, v in method_arrays.items()}},
            "meta": {**meta, "epoch": steps_done // steps_per_epoch, "steps_done": steps_done,
                     "epoch_phases": dict(epoch_phases), "wall_seconds": time.monotonic() - started,
                     "method_state": method_meta}}


def commit(taken: dict) -> int:
    if collector:  # the snapshots taken so far belong to the record the checkpoint restores
        collector.flush()
    run_dir.save_checkpoint(run_dir.checkpoint, taken["vector"], taken["state"], taken["meta"])
    return taken["meta"]["steps_done"]


try:
    phase = link.admit(config, vector, start_step, method, args.connect_timeout, log=log, checkpoint_every=every)
    history = run_dir.start(resumed_through=start_epoch if args.resume else None)  # only now: every worker came
    started = time.monotonic() - (saved.get("wall_seconds", history[-1]["wall_seconds"] if history else 0.0)
                                  if args.resume else 0.0)
    if not args.resume:  # a checkpoint from the first step on: a run stopped at any point can be resumed
        run_dir.interruptions_file.unlink(missing_ok=True)
        committed = commit(take_checkpoint(0, {}))
    for epoch in range(start_epoch, args.epochs):
        progress = Progress(steps_per_epoch, f"ps epoch {epoch + 1}/{args.epochs} step")
        resumed_inside = epoch == start_epoch and start_step % steps_per_epoch
        phases = dict(saved.get("epoch_phases", {})) if resumed_inside else {}
        for step in range(start_step % steps_per_epoch if resumed_inside else 0, steps_per_epoch):
            s = epoch * steps_per_epoch + step
            if method.is_local(s):  # the workers train alone: nothing to gather
                phases["local"] = phases.get("local", 0) + 1
            else:
                upcoming = method.next_exchange(s + 1)  # the reply announces the phase of the next step that exchanges
                following = method.next_phase(upcoming) if upcoming is not None else phase
                if following != phase:
                    log(f"step {s + 1}: workers switch from phase {method.phase_name(phase)} to {method.phase_name(following)}")
                graph.run_step(session, s, phase, following, args.step_timeout)
                if pending:  # this step's pushes came after every worker saved the pending checkpoint's state
                    committed, pending = commit(pending), None
                method.after_step(session, s, phase)
                phases[method.phase_name(phase)] = phases.get(method.phase_name(phase), 0) + 1
                phase = following
            if collector:
                collector.after_step(s, epoch, lambda: graph.model_value(session))
            if step + 1 < steps_per_epoch and checkpoints.due(method, s, every, steps_per_epoch):
                pending = take_checkpoint(s + 1, phases)
            progress.update(step + 1, {})
        s = (epoch + 1) * steps_per_epoch - 1
        reports = link.reports(args.step_timeout, epoch + 1)
        diverged = loss_diverged(reports, epoch + 1)
        if diverged:
            raise Diverged(diverged)
        if collector:
            collector.flush()
        test = classification_report(dataset.test_y, graph.evaluate(session, dataset.test_x), dataset.classes)
        record = epoch_record(epoch + 1, test, reports, phases, time.monotonic() - started)
        record["val_acc"] = (classification_report(dataset.val_y, graph.evaluate(session, dataset.val_x),
                                                   dataset.classes)["accuracy"] if len(dataset.val_y) else None)
        record["events"] = method.drain_events()
        # best.npz: the epoch of the best validation accuracy (the earlier of equals), never chosen on the test set.
        best_before = max((r["val_acc"] for r in history if r.get("val_acc") is not None), default=None)
        history.append(record)
        run_dir.append_metrics([finite_json(record)])
        events.write(epoch + 1, {k: record[k] for k in ("test_acc", "val_acc", "f1", "loss", "train_acc", "bytes_pushed",
                                                         "bytes_pulled", "comm_seconds", "step_seconds")
                                 if record[k] is not None})
        taken, pending = take_checkpoint((epoch + 1) * steps_per_epoch, {}), None  # every worker reported: saved
        taken["meta"].update(test_acc=record["test_acc"], val_acc=record["val_acc"])
        committed = commit(taken)
        if record["val_acc"] is not None and (best_before is None or record["val_acc"] > best_before):
            run_dir.save_checkpoint(run_dir.best, taken["vector"], {},
                                    {k: v for k, v in taken["meta"].items() if k not in ("method_state", "epoch_phases")})
        val = f" val_acc {record['val_acc']:.4f}" if record["val_acc"] is not None else ""
        log(f"epoch {epoch + 1}/{args.epochs} test_acc {record['test_acc']:.4f}{val} loss {record['loss']:.4f} "
            f"pushed {record['bytes_pushed']:,} B ({time.monotonic() - started:.1f}s)")
    link.reports(args.step_timeout, None)  # every worker's "done"
except (WorkerFailed, Diverged) as e:
    method.close()
    # A step or report that did not come is a stall a resume can cure; refusals at the start and divergence are not.
    resumable = isinstance(e, WorkerFailed) and e.mid_run
    if resumable:
        deadline.evidence()
        run_dir.note_interruption(s, committed, str(e))
    kept = f" (the checkpoint of step {committed} in {run_dir.path} is intact)" if committed else ""
    print(f"ps: error: {e}; stopping the run{kept}", file=sys.stderr, flush=True)
    link.abort(str(e), silent=getattr(e, "workers", ()), resumable=resumable)  # a silent worker never reads why
    cluster.exit_now(deadline.STALLED if resumable else 1)
except tf.errors.OpError as e:  # anything else TensorFlow raises mid-run: still one line, and the workers told
    method.close()
    reason = f"TensorFlow error in the PS: {type(e).__name__}: {tferrors.explain(e)}"
    deadline.evidence()
    run_dir.note_interruption(s, committed, reason)
    print(f"ps: error: {reason}; stopping the run (the checkpoint of step {committed} is intact)", file=sys.stderr,
          flush=True)
    link.abort(reason, resumable=True)
    cluster.exit_now(deadline.STALLED)
except OSError as e:  # a checkpoint or record that cannot be written (full disk, permissions)
    print(f"ps: error: cannot write the run's files in {run_dir.path}: {e}; stopping the run", file=sys.stderr, flush=True)
    link.abort(f"the PS cannot write its files ({e.strerror or e})")
    cluster.exit_now(1)
except KeyboardInterrupt:
    method.close()
    link.abort("the PS was interrupted")
    cluster.exit_now(130, "ps: interrupted; the workers were told to stop")

# --- report --------------------------------------------------------------------------------------
curve = [r["test_acc"] for r in history]
val_curve = [r.get("val_acc") for r in history]  # an epoch resumed from an older record may lack it
best_val = select_epoch(val_curve) if val_curve and None not in val_curve else None
summary = {
    "method": config.method, "method_options": method.opts.to_json(), "model": model.name, "dataset": dataset.name,
    "data": dataset.provenance, "workers": n_workers, "epochs": args.epochs, "steps": total_steps,
    "steps_per_epoch": steps_per_epoch, "lr": method.run.lr, "ps_devices": cluster.devices(),
    "total_params": model.layout.total, "pushed_params": model.layout.pushed, "pushed_layers": model.layout.pushed_layers(),
    # Ranked by final_test_acc or test_acc_at_best_val; best_test_acc selects on the test set (for reference only).
    "final_test_acc": curve[-1], "test_acc_at_best_val": None if best_val is None else curve[best_val],
    "best_val_epoch": None if best_val is None else best_val + 1,
    "best_val_acc": None if best_val is None else val_curve[best_val],
    "test_acc_by_epoch": curve, "val_acc_by_epoch": val_curve, "best_test_acc": max(curve),
    "bytes_pushed_total": int(sum(r["bytes_pushed"] for r in history)),
    "bytes_pulled_total": int(sum(r["bytes_pulled"] for r in history)),
    "comm_seconds_mean": float(np.mean([r["comm_seconds"] for r in history])),
    "wall_seconds": time.monotonic() - started, "resumed_from_epoch": start_epoch,
    "resumed_from_step": start_step,
    "phases": {k: sum(r["phases"].get(k, 0) for r in history) for k in {k for r in history for k in r["phases"]}},
    "method_stats": method.stats(), "ps_inputs": meta["ps_inputs"],
    "recoveries": run_dir.interruptions(), "checkpoint_every": every, "refused_calls_rerun": graph.refused,
    "snapshots": len(collector.writer) if collector else 0, "provenance": origin,
}
method.close()
write_json(run_dir.summary, finite_json(summary))
events.close()
selected = (f", test_acc {summary['test_acc_at_best_val']:.4f} at the best validation epoch ({best_val + 1})"
            if best_val is not None else "")
print(f"ps: done: final test_acc {summary['final_test_acc']:.4f}{selected}, pushed {summary['bytes_pushed_total']:,} B, "
      f"pulled {summary['bytes_pulled_total']:,} B; wrote {run_dir.summary}", flush=True)
for line in method.closing_lines():  # last: what the method did, and a warning if it never engaged
    print(f"ps: {line}", flush=True)
cluster.exit_now(0)
