"""An MP² worker: trains on its slice of every global mini-batch and syncs with the PS each step.

    python mp2_worker.py --ps_hosts 10.0.0.1:2222 --worker_hosts 10.0.0.2:2222,10.0.0.3:2222 \
        --task_index 0 --model lenet5 --dataset fashion_mnist --method mp2
"""
import json
import sys
import time

import numpy as np
import tensorflow as tf

import data
from runtime import cluster, flags, methods
from runtime.metrics import classification_report
from runtime.progress import Progress
from runtime.rundir import RunDir
from runtime.wire import Wire
from runtime.worker import RunStopped, WorkerGraph

# --- flags ---------------------------------------------------------------------------------------
args = flags.parser(__doc__).parse_args()
try:
    spec, index = cluster.resolve(args, "worker")
    dataset, model = flags.load_data_and_model(args)
    n_workers = len(spec.workers)
    schedule = data.Schedule(len(dataset.train_x), n_workers, args.worker_batch, args.seed)
    server = cluster.start_server(spec, "worker", index)
except (cluster.ClusterError, data.DataError, ValueError) as e:
    sys.exit(f"worker: error: {e}")
config = flags.run_config(args, model, dataset, n_workers)
rng = np.random.default_rng([args.seed, index])  # mixup draws differ per worker
run_dir = RunDir(args.out)
log_path = run_dir.path / f"worker-{index}.jsonl"
name = f"worker {index}"

# --- build ---------------------------------------------------------------------------------------
tf.compat.v1.disable_eager_execution()
method = methods.build(args.method, model.layout)
wire = Wire(n_workers, method.up_dtypes, method.down_dtypes)
graph = WorkerGraph(model, method, wire, index, args.lr)
session = cluster.session(server, "worker", index, args.threads)

# --- join, train, report ----------------------------------------------------------------------
try:
    cluster.wait_for_port(spec.ps[0], args.connect_timeout, "the PS")
    start = graph.join(session, config.to_json(), args.connect_timeout)
    print(f"{name}: joined; {schedule.steps_per_epoch} steps per epoch, starting at step {start}", flush=True)
    if start == 0:
        log_path.unlink(missing_ok=True)  # a fresh run starts a fresh log; a resumed one goes on
    for epoch in range(start // schedule.steps_per_epoch, args.epochs):
        totals = dict(loss=0.0, acc=0.0, pushed=0, pulled=0, comm=0.0, step=0.0)
        progress = Progress(schedule.steps_per_epoch, f"{name} epoch {epoch + 1}/{args.epochs}")
        for step in range(schedule.steps_per_epoch):
            t0 = time.perf_counter()
            idx = schedule.worker_indices(epoch, step, index)
            images, labels = data.mixup(dataset.train_x[idx], dataset.train_y[idx], dataset.classes, args.mixup, rng)
            loss, acc = graph.train(session, images, labels)
            t1 = time.perf_counter()
            totals["pushed"] += graph.push(session, args.step_timeout)
            totals["pulled"] += graph.pull(session, args.step_timeout)  # the barrier: all workers pushed
            t2 = time.perf_counter()
            totals["loss"] += loss
            totals["acc"] += acc
            totals["comm"] += t2 - t1
            totals["step"] += t2 - t0
            progress.update(step + 1, {"loss": loss, "acc": acc})
        steps = schedule.steps_per_epoch
        test = classification_report(dataset.test_y, graph.predict(session, dataset.test_x), dataset.classes)
        record = {
            "worker": index, "epoch": epoch + 1, "loss": totals["loss"] / steps, "train_acc": totals["acc"] / steps,
            "test_acc": test["accuracy"], "precision": test["precision"], "recall": test["recall"], "f1": test["f1"],
            "bytes_pushed": totals["pushed"], "bytes_pulled": totals["pulled"],
            "comm_seconds": totals["comm"], "step_seconds": totals["step"], "steps": steps,
        }
        graph.report(session, record, args.step_timeout)
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{name}: epoch {epoch + 1}/{args.epochs} loss {record['loss']:.4f} train_acc {record['train_acc']:.4f} "
              f"test_acc {record['test_acc']:.4f} f1 {record['f1']:.4f} comm {record['comm_seconds']:.1f}s", flush=True)
    graph.report(session, {"worker": index, "done": True}, args.step_timeout)
except (RunStopped, cluster.ClusterError) as e:
    cluster.exit_now(1, f"{name}: error: {e}")
except KeyboardInterrupt:
    cluster.exit_now(130, f"{name}: interrupted")
print(f"{name}: done", flush=True)
cluster.exit_now(0)
