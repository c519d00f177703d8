"""The MP² parameter server: the step barrier, aggregation (and prediction), evaluation and the run's records.

    python mp2_ps.py --ps_hosts 10.0.0.1:2222 --worker_hosts 10.0.0.2:2222,10.0.0.3:2222 \
        --model lenet5 --dataset fashion_mnist --method mp2 --predictor predictors/lenet5-fashion_mnist
"""
from helpers import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import sys
from pathlib import Path

import tensorflow as tf

import data
from helpers import npzio, provenance
from helpers.npzio import write_json
from paramset import ParamSetError, ParamSetWriter, SnapshotCollector
from predictor import CheckpointError
from runtime import cluster, deadline, flags
from runtime.ps import PSGraph, PSLink
from runtime.ps_loop import PSLoop, PSSettings, StartError, start_point
from runtime.ps_tasks import ShardTasks, driving_session, shard_task
from runtime.rundir import RunDir
from runtime.shards import describe, plan
from runtime.wire import Wire

WHO = "ps"  # "ps task K" for the PS tasks that hold a shard


def log(message: str, file=sys.stdout) -> None:
    print(f"{WHO}: {message}", file=file, flush=True)


def error(message: str) -> None:
    log(message, sys.stderr)


def fail(message) -> None:
    sys.exit(f"{WHO}: error: {message}")


# --- flags ---------------------------------------------------------------------------------------
args = flags.ps_parser(__doc__).parse_args()
try:
    spec, task = cluster.resolve(args, "ps")
    WHO = deadline.WHO = f"ps task {task}" if task else "ps"
    dataset, model = flags.load_data_and_model(args)
    n_workers = len(spec.workers)
    steps_per_epoch = data.Schedule(len(dataset.train_x), n_workers, args.worker_batch, args.seed).steps_per_epoch
    method = flags.build_method(args, model, n_workers, steps_per_epoch)
    shards = plan(model.layout, method, len(spec.ps), args.chunks)  # the model's partition over the PS tasks
    if task == 0:
        method.prepare_ps(flags.ps_context(args), dataset, log=log)
except (cluster.ClusterError, data.DataError, CheckpointError, ValueError) as e:
    fail(e)
config = flags.run_config(args, model, dataset, n_workers, method, len(spec.ps))
if task > 0:  # a PS task that holds a shard; task 0 drives the run
    cluster.exit_now(shard_task(spec, task, config, args.threads, args.connect_timeout, log, error))
try:
    run_dir = RunDir(args.out)
except OSError as e:
    fail(f"cannot create the run directory --out {args.out}: {e.strerror or e}; choose a directory you can write")
origin = provenance.record(run_dir.path)  # taken at the start: the code and command that ran
snapshot_dir = Path(args.snapshot_dir or run_dir.path / "snapshots")
try:  # a fresh model, or the last checkpoint's (--resume)
    start = start_point(run_dir, config, method.ps_inputs(), model.init_vector(args.seed), resume=args.resume,
                        fresh=args.fresh, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                        snapshot_dir=snapshot_dir if args.snapshot_every > 0 else None, log=log)
except StartError as e:
    fail(e)
if start is None:
    sys.exit(0)

# --- build ---------------------------------------------------------------------------------------
tf.compat.v1.disable_eager_execution()
try:
    session = driving_session(spec, args.threads, args.connect_timeout)  # once every PS task is up
    wire = Wire(n_workers, method.up_dtypes, method.down_dtypes, len(spec.ps), [s.index for s in shards])
    graph = PSGraph(model, method, wire, cluster.PS_DEVICE, args.verify_sync, shards)
    link, tasks = PSLink(session, wire), ShardTasks(session, wire, spec.ps)
    tasks.admit(config, args.connect_timeout, log)  # before anything runs on their devices
    graph.initialise(session, start.vector, start.state, str(run_dir.checkpoint))
    if start.resumed:  # what the method keeps outside its state variables (online MP²'s schedule, predictors)
        method.restore(session, npzio.under(start.state, "method/"), start.meta.get("method_state", {}), start.step)
    collector = None
    if args.snapshot_every > 0:
        writer = ParamSetWriter(snapshot_dir, model.layout, dataset.name)
        if start.resumed:  # the stretch after the checkpoint is abandoned, and will be run again
            dropped = writer.keep_through_step(start.step - 1)
            if dropped:
                log(f"dropped {dropped} snapshots taken after the checkpoint")
        collector = SnapshotCollector(session, cluster.PS_DEVICE, model, dataset, writer, args.snapshot_every,
                                      args.seed, args.snapshot_eval_images, regular=args.snapshot_regular)
except (cluster.ClusterError, CheckpointError, ParamSetError, ValueError) as e:
    fail(e)
log(f"{config.method} on {model.name}/{dataset.name}: {model.layout.total:,} parameters ({model.layout.pushed:,} in "
    f"the pushed group: {', '.join(model.layout.pushed_layers())}), {n_workers} workers, {steps_per_epoch} steps per "
    f"epoch; listening on {spec.ps[0]}; devices here: {', '.join(cluster.devices())}")
log(f"data: {dataset.provenance.get('origin')} {'; '.join(dataset.provenance.get('transforms', []))}"
    + (f"\n{WHO}: the model over the PS tasks: {describe(shards)}" if len(shards) > 1 else ""))

# --- loop ----------------------------------------------------------------------------------------
settings = PSSettings(epochs=args.epochs, steps_per_epoch=steps_per_epoch, step_timeout=args.step_timeout,
                      connect_timeout=args.connect_timeout, checkpoint_every=args.checkpoint_every)
loop = PSLoop(method, graph, link, session, run_dir, dataset, config, settings, start, collector, log=log, error=error,
              tasks=tasks)
if code := loop.run():
    cluster.exit_now(code)

# --- report --------------------------------------------------------------------------------------
summary = loop.summary(model, origin)
method.close()
write_json(run_dir.summary, summary)
selected = (f", test_acc {summary['test_acc_at_best_val']:.4f} at the best validation epoch ({summary['best_val_epoch']})"
            if summary["best_val_epoch"] is not None else "")
log(f"done: final test_acc {summary['final_test_acc']:.4f}{selected}, pushed {summary['bytes_pushed_total']:,} B, "
    f"pulled {summary['bytes_pulled_total']:,} B; wrote {run_dir.summary}")
for line in method.closing_lines():  # last: what the method did, and a warning if it never engaged
    log(line)
tasks.release()
cluster.exit_now(0)
