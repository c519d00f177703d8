"""An MP² worker: trains on its slice of every global mini-batch and syncs with the PS each step.

    python mp2_worker.py --ps_hosts 10.0.0.1:2222 --worker_hosts 10.0.0.2:2222,10.0.0.3:2222 \
        --task_index 0 --model lenet5 --dataset fashion_mnist --method mp2
"""
from helpers import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import sys

import tensorflow as tf

import data
from predictor import CheckpointError
from runtime import cluster, deadline, flags
from runtime.rundir import RunDir
from runtime.shards import plan
from runtime.wire import Wire
from runtime.worker import WorkerGraph
from runtime.worker_loop import WorkerLoop, WorkerSettings

# --- flags ---------------------------------------------------------------------------------------
args = flags.parser(__doc__).parse_args()
try:
    spec, index = cluster.resolve(args, "worker")
    name = f"worker {index}"
    dataset, model = flags.load_data_and_model(args)
    n_workers = len(spec.workers)
    schedule = data.Schedule(len(dataset.train_x), n_workers, args.worker_batch, args.seed)
    method = flags.build_method(args, model, n_workers, schedule.steps_per_epoch)
    shards = plan(model.layout, method, len(spec.ps), args.chunks)  # the model's partition over the PS tasks
    method.prepare_worker(log=lambda s: print(f"{name}: {s}", flush=True))
    server = cluster.start_server(spec, "worker", index, args.threads)
except (cluster.ClusterError, data.DataError, CheckpointError, ValueError) as e:
    sys.exit(f"worker: error: {e}")
config = flags.run_config(args, model, dataset, n_workers, method, len(spec.ps))
try:
    run_dir = RunDir(args.out)
except OSError as e:
    sys.exit(f"worker: error: cannot create the run directory --out {args.out}: {e.strerror or e}")
deadline.WHO = name

# --- build ---------------------------------------------------------------------------------------
tf.compat.v1.disable_eager_execution()
wire = Wire(n_workers, method.up_dtypes, method.down_dtypes, len(spec.ps), [s.index for s in shards])
graph = WorkerGraph(model, method, wire, index, method.run.lr, args.verify_sync,
                    log=lambda line: print(f"{name}: {line}", flush=True), shards=shards)
session = cluster.session(server, "worker", index, args.threads)

# --- join, train, report ---------------------------------------------------------------------------
settings = WorkerSettings(epochs=args.epochs, seed=args.seed, mixup=args.mixup, step_timeout=args.step_timeout,
                          connect_timeout=args.connect_timeout, verify_sync=args.verify_sync,
                          trace_steps=args.trace_steps)
loop = WorkerLoop(graph, session, method, schedule, dataset, index, settings, run_dir, config.to_json(), spec.ps,
                  log=lambda s: print(f"{name}: {s}", flush=True),
                  error=lambda s: print(f"{name}: {s}", file=sys.stderr, flush=True))
code = loop.run()
if not code:
    print(f"{name}: done", flush=True)
cluster.exit_now(code)
