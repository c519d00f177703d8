"""The MP² parameter server: the step barrier, aggregation (and prediction), and the run's records.

    python mp2_ps.py --ps_hosts 10.0.0.1:2222 --worker_hosts 10.0.0.2:2222,10.0.0.3:2222 \
        --model lenet5 --dataset fashion_mnist --method mp2 --predictor predictors/lenet5-fashion_mnist.npz
"""
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import data
from predictor import CheckpointError
from paramset import ParamSetError, ParamSetWriter
from runtime import cluster, flags, methods
from runtime.collect import SnapshotCollector
from runtime.config import RunConfig
from runtime.progress import Progress
from runtime.ps import PSLink, WorkerFailed
from runtime.rundir import RunDir, write_json
from runtime.wire import Wire

# --- flags ---------------------------------------------------------------------------------------
parser = flags.ps_parser(__doc__)
args = parser.parse_args()
try:
    spec, _ = cluster.resolve(args, "ps")
    dataset, model = flags.load_data_and_model(args)
    n_workers = len(spec.workers)
    steps_per_epoch = data.Schedule(len(dataset.train_x), n_workers, args.worker_batch, args.seed).steps_per_epoch
except (cluster.ClusterError, data.DataError, ValueError) as e:
    sys.exit(f"ps: error: {e}")
config = flags.run_config(args, model, dataset, n_workers)
run_dir = RunDir(args.out)
meta = {"config": config.to_json()}

# --- the starting model: fresh, or the last saved epoch ------------------------------------------
history, start_epoch = [], 0
vector = model.init_vector(args.seed)
snapshot_dir = Path(args.snapshot_dir or run_dir.path / "snapshots")
if args.resume:
    if not run_dir.checkpoint.exists():
        sys.exit(f"ps: error: --resume: no checkpoint in {run_dir.path} (nothing to resume; drop --resume)")
    vector, saved = run_dir.load_model(run_dir.checkpoint)
    # --epochs may grow on resume; every other flag must be the saved run's.
    diffs = config.differences(RunConfig.from_json(saved["config"]), "the saved run", "this one", ignore=("epochs",))
    if diffs:
        sys.exit(f"ps: error: --resume: {run_dir.checkpoint} belongs to another configuration: " + "; ".join(diffs))
    start_epoch = saved["epoch"]
    history = run_dir.keep_metrics_through(start_epoch)
    print(f"ps: resuming after epoch {start_epoch}", flush=True)
else:
    if args.snapshot_every > 0 and (snapshot_dir / "manifest.json").exists():
        sys.exit(f"ps: error: {snapshot_dir} already holds snapshots of an earlier run; delete it, choose "
                 f"another --snapshot-dir, or continue that run with --resume")
    if run_dir.metrics.exists():
        run_dir.metrics.unlink()  # a fresh run in an old directory starts a fresh record

# --- build ---------------------------------------------------------------------------------------
tf.compat.v1.disable_eager_execution()
try:
    method = methods.build(args.method, model.layout)
    server = cluster.start_server(spec, "ps", 0)
    session = cluster.session(server, "ps", 0, args.threads)
    link = PSLink(session, Wire(n_workers, method.up_dtypes, method.down_dtypes), method)
    method.prepare_ps(session, cluster.PS_DEVICE, {"predictor": args.predictor})
    collector = None
    if args.snapshot_every > 0:
        writer = ParamSetWriter(snapshot_dir, model.layout, dataset.name)
        collector = SnapshotCollector(session, cluster.PS_DEVICE, model, dataset, writer, args.snapshot_every,
                                      args.seed, args.snapshot_eval_images)
except (cluster.ClusterError, CheckpointError, ParamSetError, ValueError) as e:
    sys.exit(f"ps: error: {e}")
print(f"ps: {config.method} on {model.name}/{dataset.name}: {model.layout.total:,} parameters "
      f"({model.layout.pushed:,} pushed), {n_workers} workers, {steps_per_epoch} steps per epoch; "
      f"listening on {spec.ps[0]}", flush=True)

# --- loop ----------------------------------------------------------------------------------------
try:
    link.admit(config, vector, start_epoch * steps_per_epoch, args.connect_timeout, log=lambda s: print(f"ps: {s}", flush=True))
    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs):
        progress = Progress(steps_per_epoch, f"ps epoch {epoch + 1}/{args.epochs} step")
        for step in range(steps_per_epoch):
            payloads = link.gather(args.step_timeout)
            vector, reply = method.aggregate(payloads, vector)
            link.broadcast(reply)
            if collector:
                collector.after_step(epoch * steps_per_epoch + step, epoch, vector)
            progress.update(step + 1, {})
        records = link.reports(args.step_timeout)
        if collector:
            collector.flush()
        run_dir.append_metrics(records)
        history += records
        test_acc = float(np.mean([r["test_acc"] for r in records]))
        saved = {**meta, "epoch": epoch + 1, "test_acc": test_acc}
        run_dir.save_model(run_dir.checkpoint, vector, saved)
        if test_acc >= max((r["test_acc"] for r in history), default=0.0):
            run_dir.save_model(run_dir.best, vector, saved)
        print(f"ps: epoch {epoch + 1}/{args.epochs} test_acc {test_acc:.4f} "
              f"({time.monotonic() - started:.1f}s)", flush=True)
    link.reports(args.step_timeout)  # every worker's "done"
except WorkerFailed as e:
    print(f"ps: error: {e}; stopping the run", file=sys.stderr, flush=True)
    link.abort(str(e))
    cluster.exit_now(1)
except KeyboardInterrupt:
    link.abort("the PS was interrupted")
    cluster.exit_now(130, "ps: interrupted; the workers were told to stop")

# --- report --------------------------------------------------------------------------------------
by_epoch = {}
for r in history:
    by_epoch.setdefault(r["epoch"], []).append(r["test_acc"])
curve = [float(np.mean(by_epoch[e])) for e in sorted(by_epoch)]
summary = {
    "method": config.method, "model": model.name, "dataset": dataset.name, "workers": n_workers,
    "epochs": args.epochs, "steps": args.epochs * steps_per_epoch, "steps_per_epoch": steps_per_epoch,
    "total_params": model.layout.total, "pushed_params": model.layout.pushed,
    "best_test_acc": max(curve), "final_test_acc": curve[-1], "test_acc_by_epoch": curve,
    "bytes_pushed_total": int(sum(r["bytes_pushed"] for r in history)),
    "bytes_pulled_total": int(sum(r["bytes_pulled"] for r in history)),
    "comm_seconds_mean": float(np.mean([r["comm_seconds"] for r in history])),
    "wall_seconds": time.monotonic() - started, "resumed_from_epoch": start_epoch,
    "ps_predict_seconds": getattr(method, "predict_seconds", 0.0), "predictor": args.predictor,
    "snapshots": len(collector.writer) if collector else 0,
}
write_json(run_dir.summary, summary)
print(f"ps: done: best test_acc {summary['best_test_acc']:.4f}, pushed {summary['bytes_pushed_total']:,} B, "
      f"pulled {summary['bytes_pulled_total']:,} B; wrote {run_dir.summary}", flush=True)
cluster.exit_now(0)
