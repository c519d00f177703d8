"""An MP² worker: trains on its slice of every global mini-batch and syncs with the PS each step.

    python mp2_worker.py --ps_hosts 10.0.0.1:2222 --worker_hosts 10.0.0.2:2222,10.0.0.3:2222 \
        --task_index 0 --model lenet5 --dataset fashion_mnist --method mp2
"""
import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import json
import sys
import time

import numpy as np
import tensorflow as tf

import data
import npzio
from predictor import CheckpointError
from runtime import checkpoints, cluster, deadline, flags
from runtime.methods.base import LOCAL
from runtime.progress import Progress
from runtime.rundir import RunDir
from runtime.wire import Wire
from runtime.worker import RunStopped, StepTrace, WorkerGraph

# --- flags ---------------------------------------------------------------------------------------
args = flags.parser(__doc__).parse_args()
try:
    spec, index = cluster.resolve(args, "worker")
    dataset, model = flags.load_data_and_model(args)
    n_workers = len(spec.workers)
    schedule = data.Schedule(len(dataset.train_x), n_workers, args.worker_batch, args.seed)
    method = flags.build_method(args, model, n_workers, schedule.steps_per_epoch)
    method.prepare_worker(log=lambda s: print(f"worker {index}: {s}", flush=True))
    server = cluster.start_server(spec, "worker", index, args.threads)
except (cluster.ClusterError, data.DataError, CheckpointError, ValueError) as e:
    sys.exit(f"worker: error: {e}")
config = flags.run_config(args, model, dataset, n_workers, method)
try:
    run_dir = RunDir(args.out)
except OSError as e:
    sys.exit(f"worker: error: cannot create the run directory --out {args.out}: {e.strerror or e}")
log_path = run_dir.path / f"worker-{index}.jsonl"
states = checkpoints.WorkerStateFiles(run_dir.path, index)
name = f"worker {index}"
deadline.WHO = name
trace = StepTrace(run_dir.path / f"trace-worker-{index}.npz", args.trace_steps)

# --- build ---------------------------------------------------------------------------------------
tf.compat.v1.disable_eager_execution()
wire = Wire(n_workers, method.up_dtypes, method.down_dtypes)
graph = WorkerGraph(model, method, wire, index, method.run.lr, args.verify_sync,
                    log=lambda line: print(f"{name}: {line}", flush=True))
session = cluster.session(server, "worker", index, args.threads)

# --- join, train, report ----------------------------------------------------------------------
try:
    cluster.wait_for_port(spec.ps[0], args.connect_timeout, "the PS")
    start, phase, checkpoint_every = graph.join(session, config.to_json(), args.connect_timeout, spec.ps[0])
    first_epoch, first_step = divmod(start, schedule.steps_per_epoch)
    print(f"{name}: joined; {schedule.steps_per_epoch} steps per epoch, starting at step {start}; "
          f"devices here: {', '.join(cluster.devices())} (training on {'GPU:0' if 'GPU:0' in cluster.devices() else 'CPU'})",
          flush=True)
    if not start:  # a fresh run: an earlier run's record of this worker is kept aside, never overwritten
        aside = run_dir.set_aside([log_path, *states.paths, trace.path])
        if aside:
            print(f"{name}: an earlier run's record of this worker is now in {aside}", flush=True)
    kept = [r for r in (json.loads(l) for l in log_path.read_text().splitlines() if l.strip())] if start and log_path.exists() else []
    log_path.write_text("".join(json.dumps(r) + "\n" for r in kept if r["epoch"] <= first_epoch))
    carried = {}  # a checkpoint inside an epoch: what that epoch had counted so far
    if start:  # resumed: the method's and optimizer's state as saved at that step, if this host has it
        try:
            arrays, saved = states.read(start)
            graph.restore(session, arrays, f"{states.latest.parent}/worker-{index}-state*.npz (step {start})")
            carried = saved.get("epoch_totals", {}) if first_step else {}
        except (npzio.NpzError, ValueError) as e:
            print(f"{name}: warning: optimizer and method state start afresh ({e})", flush=True)
    for epoch in range(first_epoch, args.epochs):
        method.worker_epoch_start(graph.side, session, epoch)
        rng = np.random.default_rng([args.seed, index, epoch])  # mixup draws: per worker and epoch, so a resume repeats them
        begin = first_step if epoch == first_epoch else 0
        for step in range(begin):  # a resume inside the epoch: the draws of the steps already done, made again
            idx = schedule.worker_indices(epoch, step, index)
            data.mixup(dataset.train_x[idx], dataset.train_y[idx], dataset.classes, args.mixup, rng)
        totals = dict(loss=0.0, acc=0.0, pushed=0, pulled=0, comm=0.0, step=0.0, verified=0, retries=0)
        totals.update(carried if begin else {})
        retries_before = graph.retries
        progress = Progress(schedule.steps_per_epoch, f"{name} epoch {epoch + 1}/{args.epochs}")
        for step in range(begin, schedule.steps_per_epoch):
            s = epoch * schedule.steps_per_epoch + step
            t0 = time.perf_counter()
            idx = schedule.worker_indices(epoch, step, index)
            images, labels = data.mixup(dataset.train_x[idx], dataset.train_y[idx], dataset.classes, args.mixup, rng)
            traced = [] if s < args.trace_steps else None
            if method.is_local(s):  # no exchange: train alone, the PS expects nothing
                loss, acc = graph.train_locally(session, images, labels, args.step_timeout, traced)
                t2 = t1 = time.perf_counter()
                if traced is not None:
                    trace.add(s, LOCAL, traced)
            else:
                loss, acc, sent = graph.push(session, phase, images, labels, args.step_timeout, traced, step=s)
                t1 = time.perf_counter()
                pulled = graph.pull(session, phase, args.step_timeout, traced, step=s)  # the barrier (and any further exchanges)
                t2 = time.perf_counter()
                if args.verify_sync:
                    if pulled.theirs != pulled.mine:
                        raise RunStopped(f"after step {s + 1} this worker's model differs from the PS's (digest {pulled.mine} "
                                         f"against {pulled.theirs}): the method's update is not reproduced exactly")
                    totals["verified"] += 1
                if traced is not None:
                    trace.add(s, phase, traced)
                phase = pulled.next_phase
                totals["pushed"] += sent + pulled.sent
                totals["pulled"] += pulled.received
            totals["loss"] += loss
            totals["acc"] += acc
            totals["comm"] += t2 - t1
            totals["step"] += t2 - t0
            if step + 1 < schedule.steps_per_epoch and checkpoints.due(method, s, checkpoint_every, schedule.steps_per_epoch):
                so_far = {**totals, "retries": totals["retries"] + graph.retries - retries_before}
                states.write(s + 1, graph.state(session), {"epoch": epoch, "epoch_totals": so_far})
            progress.update(step + 1, {"loss": loss, "acc": acc})
        steps = schedule.steps_per_epoch
        record = {
            "worker": index, "epoch": epoch + 1, "loss": totals["loss"] / steps, "train_acc": totals["acc"] / steps,
            "bytes_pushed": totals["pushed"], "bytes_pulled": totals["pulled"],
            "comm_seconds": totals["comm"], "step_seconds": totals["step"], "steps": steps,
            "steps_verified_in_sync": totals["verified"], "retries": totals["retries"] + graph.retries - retries_before,
        }
        states.write((epoch + 1) * steps, graph.state(session), {"epoch": epoch + 1})
        trace.write()
        graph.report(session, record, args.step_timeout)
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{name}: epoch {epoch + 1}/{args.epochs} loss {record['loss']:.4f} train_acc {record['train_acc']:.4f} "
              f"comm {record['comm_seconds']:.1f}s", flush=True)
    graph.report(session, {"worker": index, "done": True}, args.step_timeout)
except RunStopped as e:
    cluster.exit_now(deadline.STALLED if e.resumable else 1, f"{name}: error: {e}")
except cluster.ClusterError as e:
    cluster.exit_now(1, f"{name}: error: {e}")
except OSError as e:
    cluster.exit_now(1, f"{name}: error: cannot write {run_dir.path}: {e}")
except KeyboardInterrupt:
    cluster.exit_now(130, f"{name}: interrupted")
print(f"{name}: done", flush=True)
cluster.exit_now(0)
