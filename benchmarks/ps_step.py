"""The PS's time per step, for any of the project's methods: runtime.ps.PSGraph against real worker processes.

    .venv/bin/python benchmarks/ps_step.py --model resnet18 --workers 4 8 --methods baseline mp2 topk dgc powersgd --steps 20

The PS is the real one, built as mp2_ps.py builds it: its flags, flags.build_method (each method
with its default options), method.prepare_ps, the queues of runtime.wire.Wire and runtime.ps.PSGraph.
MP² runs with an untrained predictor checkpoint (predictor.Predictor(layout, seed=0)) and WNN with an
untrained nowcaster that records every step (so its steps are records, every fifth a jump): the
timing does not depend on their weights. The one-time study of the PS before and after its redesign
(results/ps_step/) was made by this script's earlier form, which had the old PS too
(`git show f6324a8:benchmarks/ps_step.py`).

What "PS time per step" means here. The workers are real processes, each with its own
tf.distribute.Server on 127.0.0.1, that do no training: they enqueue a precomputed payload of the
method's shapes (held in variables on the worker, as a real worker's model is) and wait for the
reply, as fast as they can. What a worker pushes:

    baseline, local SGD, WNN, MP²'s full steps   the whole model
    sync                                         a gradient of the whole model's size
    MP²'s partial steps                          the pushed group (--push front)
    Top-k                                        per tensor topk_count(ratio, n) values and positions
    DGC                                          per tensor of 2+ dimensions its target count
                                                 max(1, ceil(ratio n)) values and positions (the real
                                                 count lies within 0.8-1.3 of it; the ratio after the
                                                 warm-up), the 1-D tensors dense
    PowerSGD                                     P of every matrix and the 1-D tensors, then Q of every
                                                 matrix: two exchanges per step

Each worker draws its own positions, so the sparse methods' average, and with it their reply, has up
to N·k entries: the most they can send back. Local SGD's steps between syncs have no exchange; only
its sync steps are timed.

Timing the PS from when it starts waiting would charge it the workers' pushes; pre-filling cannot help
either, since a worker sends step s+1 only after it has its reply to step s. So before each exchange
the PS polls the sizes of the workers' queues until every payload of that exchange is on the PS, and
times from there until the exchange's session run has enqueued the last reply: pure PS work (dequeue,
aggregate, update, predict, reply), with every worker idle and waiting. A step's time is the sum over
its exchanges. The workers time push -> reply over the whole step and count the bytes they push and
receive, as the runtime counts them (the reply's control word included). One extra step, unmeasured,
is traced op by op to show where its time goes. A call that gRPC delivered twice, or that TensorFlow
aborted without naming a cause, is asked about and recovered as runtime/worker.py recovers it (the PS's
`delivered` and `replied` counters); results.json counts such calls per configuration (`recovered_calls`,
0 in a clean run: a step with one is slower by the asking).

Writes results.json (with provenance) and README.md (the command, the machine, the table) to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from helpers import argtypes, provenance

ROOT = Path(__file__).resolve().parent.parent
# Its own PS and worker processes run as a module from ROOT: this checkout's code, installed or not.
SELF = [sys.executable, "-m", "benchmarks.ps_step"]

METHOD_NAMES = ("baseline", "sync", "mp2", "topk", "dgc", "powersgd", "localsgd", "sparseloco", "streaming", "wnn")
FILE_FLAG = {"mp2": "--predictor", "wnn": "--wnn"}  # the methods that read a file, and its flag
CLASSES = 10  # CIFAR-10 / Fashion-MNIST: ResNet-18 then has 3,139,274 parameters
RESULT_TAG = "ps_step result: "
TIMEOUT = 300.0  # seconds any one blocking call may take before the run is declared stuck
POLL_SECONDS = 0.0005
STEPS_PER_EPOCH_PER_STEP = 64  # the RunInfo's epoch length per timed step: room for local SGD's syncs


def build_method(model_name: str, method_name: str, workers: int, timed_steps: int, method_file: str | None):
    """(args, model, method) as mp2_ps.py makes them from its flags, with the method's default options."""
    import models
    from runtime import flags

    argv = ["--model", model_name, "--method", method_name]
    if method_file:
        argv += [FILE_FLAG[method_name], method_file]
    args = flags.ps_parser("").parse_args(argv)
    model = models.get(args.model, CLASSES, push=args.push)
    method = flags.build_method(args, model, workers, steps_per_epoch=STEPS_PER_EPOCH_PER_STEP * timed_steps)
    return args, model, method


def exchanging_steps(method, count: int) -> list[int]:
    """The first `count` global steps that exchange with the PS (all of them but local SGD's local steps)."""
    end = method.run.epochs * method.run.steps_per_epoch
    steps = [s for s in range(end) if not method.is_local(s)][:count]
    if len(steps) < count:
        raise ValueError(f"{method.name} exchanges on only {len(steps)} of {end} steps; ps_step needs {count}")
    return steps


def payloads(method, phase: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """What one worker pushes in each exchange of a step of `phase`: arrays of the shapes and dtypes the
    method's worker sends (its up_dtypes), values drawn from `rng`."""
    layout = method.layout

    def floats(n: int) -> np.ndarray:
        return rng.standard_normal(n, dtype=np.float32) * np.float32(0.01)

    if method.name in ("baseline", "sync", "localsgd", "wnn"):
        return [[floats(layout.total)]]
    def sparse(sizes: list[int], counts: list[int]) -> list[np.ndarray]:
        """Values and int32 positions (in the tensors' concatenation) of counts[i] distinct entries of tensor i."""
        offsets = np.cumsum([0, *sizes[:-1]])
        positions = [rng.choice(n, k, replace=False).astype(np.int32) + np.int32(o)
                     for n, k, o in zip(sizes, counts, offsets)]
        return [floats(sum(counts)), np.concatenate([np.zeros(0, np.int32), *positions])]

    if method.name == "mp2":
        from compression.topk import topk_count
        from models import PREDICTED
        from runtime.methods.mp2 import FULL

        sent = [floats(layout.total if phase == FULL else layout.pushed)]
        ratio = method.opts.correction_ratio
        if ratio > 0:  # the predicted group's Top-k gradient, none on full steps
            sizes = [spec.size for spec in layout.params if spec.group == PREDICTED]
            sent += sparse(sizes, [0 if phase == FULL else topk_count(ratio, n) for n in sizes])
        return [sent]
    if method.name in ("topk", "dgc"):
        dense = method.dense_mask()
        biases = sum(spec.size for spec, is_dense in zip(layout.params, dense) if is_dense)
        return [[*sparse([spec.size for spec in layout.params], sparse_counts(method)), floats(biases)]]
    if method.name == "sparseloco":  # per tensor: 12-bit indices within a chunk, 2-bit bins, five floats
        from compression import sparseloco as sl

        indices, bins = [], []
        for plan in method.plans:
            i = rng.integers(0, plan.chunk_len, plan.entries + plan.entries % 2).reshape(-1, 2)
            a, b = i[:, 0], i[:, 1]
            indices.append(np.stack([a & 0xFF, (a >> 8) | ((b & 0xF) << 4), b >> 4], axis=1).reshape(-1).astype(np.uint8))
            bins.append(rng.integers(0, 256, sl.bin_bytes(plan.entries), dtype=np.uint8))
        return [[np.concatenate(indices), np.concatenate(bins), floats(sl.PARAMS * len(method.plans))]]
    if method.name == "streaming":  # the fragment's outer gradient: packed 4-bit codes and a float per tensor
        n = method.payload_bytes(phase) - 4 * len(method._params(phase))
        return [[rng.integers(0, 256, n, dtype=np.uint8), floats(len(method._params(phase)))]]
    if method.name == "powersgd":
        plan = method.plan()
        return [[floats(plan.first_size)], [floats(plan.q_size)]]
    raise ValueError(f"ps_step does not know what a {method.name} worker pushes; add it to payloads()")


def sparse_counts(method) -> list[int]:
    """Entries a Top-k or DGC worker sends of each tensor (0 for a tensor DGC sends dense)."""
    from compression.topk import topk_count

    ratio = method.opts.ratio
    if method.name == "topk":
        return [topk_count(ratio, spec.size) for spec in method.layout.params]
    return [0 if is_dense else min(spec.size, max(1, math.ceil(ratio * spec.size)))  # DGC's target k
            for spec, is_dense in zip(method.layout.params, method.dense_mask())]


def summarize(seconds: list[float]) -> dict:
    ms = sorted(1000 * s for s in seconds)
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return {"median_ms": statistics.median(ms), "p90_ms": p90, "mean_ms": statistics.fmean(ms), "min_ms": ms[0],
            "max_ms": ms[-1], "steps": len(ms)}


def spread(values: list[int]) -> dict:
    return {"median": statistics.median_low(values), "min": min(values), "max": max(values)}


# --- a worker that only pushes and pulls ----------------------------------------------------------
def work(ps_host: str, worker_hosts: list[str], index: int, model_name: str, method_name: str, steps: int,
         first_phase: int) -> None:
    import tensorflow as tf

    from runtime import cluster, deadline, faults, tferrors
    from runtime.wire import Wire, as_list, nbytes, push_arrived, reply_gone
    from runtime.worker import LOOK_AGAIN_SECONDS, RETRIES

    tf.compat.v1.disable_eager_execution()
    spec = cluster.Cluster((ps_host,), tuple(worker_hosts))
    server = cluster.start_server(spec, "worker", index, 1)
    _, _, method = build_method(model_name, method_name, len(worker_hosts), steps, None)
    wire = Wire(len(worker_hosts), method.up_dtypes, method.down_dtypes)
    rng = np.random.default_rng(index)
    pushes: dict[int, list[tf.Operation]] = {}  # phase -> one enqueue per exchange
    up_bytes: dict[int, int] = {}
    feeds, initializers = {}, []
    with tf.device(f"/job:worker/task:{index}"):
        for phase in method.phase_names:
            pushes[phase] = []
            exchanges = payloads(method, phase, rng)
            up_bytes[phase] = sum(a.nbytes for arrays in exchanges for a in arrays)
            for k, arrays in enumerate(exchanges):
                held = []
                for j, array in enumerate(arrays):
                    initial = tf.compat.v1.placeholder(array.dtype, array.shape)
                    held.append(tf.Variable(initial, trainable=False, name=f"payload_{phase}_{k}_{j}"))
                    feeds[initial] = array
                    initializers.append(held[-1].initializer)
                pushes[phase].append(wire.up[index].enqueue([v.read_value() for v in held]))
        # The reply lands in worker memory (an identity on the worker device pulls it over); only its size
        # and the control word come back to Python.
        landed = [tf.identity(t) for t in as_list(wire.down[index].dequeue())]
        pull = [nbytes(landed), landed[-1]]
    # Where this worker's calls stand on the PS, for a call gRPC delivered twice or TensorFlow aborted
    # without a cause (tferrors.ambiguous): asked about as runtime/worker.py asks, with the same counters.
    push_probe = [wire.up[index].size(), wire.delivered[index].read_value()]
    pull_probe = [wire.down[index].size(), wire.replied.read_value()]
    cluster.wait_for_port(ps_host, 60, "the PS")
    session = cluster.session(server, "worker", index, 1)
    session.run(initializers, feeds)
    exchanges, recovered = 0, 0

    def call(fetches, what: str, probe: list, settled, before, after) -> list:
        """Run `fetches`; after an ambiguous abort, run again unless `settled(*probe)` says it took effect.
        `before`, `after`: runtime/faults.py's hooks, which the tests use to fail a call on purpose."""
        nonlocal recovered
        for attempt in range(RETRIES + 1):
            try:
                before()
                got = deadline.run(session, fetches, seconds=TIMEOUT, what=what)
                after()
                return got
            except tf.errors.AbortedError as e:
                if not tferrors.ambiguous(e) or attempt == RETRIES:
                    raise
                recovered += 1
                time.sleep(LOOK_AGAIN_SECONDS)  # the first copy of the call may still be settling on the PS
                done = settled(*deadline.run(session, probe, seconds=TIMEOUT, what=f"{what}: asking the PS"))
                print(f"ps_step: worker {index}: {what}: aborted ({tferrors.explain(e)}); "
                      + ("it had taken effect" if done else "run again"), file=sys.stderr, flush=True)
                if done:
                    return []

    def pushed_already(queued: int, delivered: int) -> bool:
        return push_arrived(queued, delivered, exchanges)

    def reply_lost(waiting: int, replied: int) -> bool:
        if reply_gone(waiting, replied, exchanges):  # taken from down/i, and lost on the way: nothing to wait for
            raise RuntimeError(f"worker {index}: the PS's reply to exchange {exchanges} was taken and lost")
        return False

    times, pushed, received = [], [], []
    phase = first_phase
    for step in range(steps):
        started, down = time.perf_counter(), 0
        for k, push in enumerate(pushes[phase]):
            exchanges += 1
            call(push, f"worker {index} pushing step {step + 1}", push_probe, pushed_already,
                 lambda: faults.before_send(index, step), lambda: faults.after_send(index, step))
            got, control = call(pull, f"worker {index} waiting for reply {step + 1}", pull_probe, reply_lost,
                                lambda: faults.before_pull(index, step), lambda: None)
            down += int(got)
        times.append(time.perf_counter() - started)
        pushed.append(up_bytes[phase])
        received.append(down)
        phase = int(control[0])  # the reply announces the next step's phase
    print(RESULT_TAG + json.dumps({"index": index, "step_seconds": times, "bytes_up": pushed, "bytes_down": received,
                                   "recovered_calls": recovered}), flush=True)
    cluster.exit_now(0)


# --- the PS ---------------------------------------------------------------------------------------
def serve(model_name: str, method_name: str, workers: int, warmup: int, steps: int, method_file: str | None,
          log_dir: Path) -> dict:
    import tensorflow as tf

    from runtime import cluster, deadline, flags
    from runtime.ps import PSGraph
    from runtime.wire import Wire

    tf.compat.v1.disable_eager_execution()
    ports = cluster.free_ports(workers + 1)
    spec = cluster.Cluster((f"127.0.0.1:{ports[0]}",), tuple(f"127.0.0.1:{p}" for p in ports[1:]))
    server = cluster.start_server(spec, "ps", 0, 1)
    session = cluster.session(server, "ps", 0, 1)  # mp2_ps.py's default --threads

    # Built as mp2_ps.py builds it: its flags, its method factory, its graph.
    total_steps = warmup + steps + 1  # the last one, unmeasured, traced op by op
    args, model, method = build_method(model_name, method_name, workers, total_steps, method_file)
    method.prepare_ps(flags.ps_context(args), dataset=None)  # a predictor or nowcaster file (or none) needs no data
    wire = Wire(workers, method.up_dtypes, method.down_dtypes)
    graph = PSGraph(model, method, wire, cluster.PS_DEVICE, args.verify_sync)
    graph.initialise(session, model.init_vector(args.seed))
    all_present = tf.reduce_all(tf.stack([q.size() for q in wire.up]) >= 1)
    plan = exchanging_steps(method, total_steps)
    phase = method.next_phase(plan[0])  # what the PS's welcome would announce

    procs = []
    for index in range(workers):
        with open(log_dir / f"worker-{index}.log", "w") as log:  # the child keeps its own handle
            procs.append(subprocess.Popen(
                [*SELF, "--role", "worker", "--ps-host", spec.ps[0], "--worker-hosts", ",".join(spec.workers),
                 "--index", str(index), "--model", model_name, "--methods", method_name, "--steps", str(total_steps),
                 "--phase", str(phase)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True))
    try:
        ps_seconds, phases, traces, exchanges = [], [], [], 0
        for i, step in enumerate(plan):
            following = method.next_phase(plan[i + 1]) if i + 1 < len(plan) else phase
            traced = i == len(plan) - 1
            seconds = 0.0
            for op in graph.step_ops[phase]:
                exchanges += 1
                end = time.monotonic() + TIMEOUT
                while not session.run(all_present):
                    if time.monotonic() > end or any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"step {i + 1}: a worker stopped pushing (see {log_dir}/worker-*.log)")
                    time.sleep(POLL_SECONDS)
                feed = {graph.step: step, graph.next_phase: following, graph.exchange: exchanges}
                started = time.perf_counter()
                if traced:
                    traces.append(tf.compat.v1.RunMetadata())
                    session.run(op, feed, options=tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
                                run_metadata=traces[-1])
                else:
                    deadline.run(session, op, feed, seconds=TIMEOUT, what=f"step {i + 1}")
                seconds += time.perf_counter() - started
            started = time.perf_counter()
            method.after_step(session, step, phase)
            ps_seconds.append(seconds + time.perf_counter() - started)
            phases.append(method.phase_name(phase))
            phase = following
        worker_results = [_worker_result(p, log_dir) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    measured = range(warmup, warmup + steps)
    by_phase = {name: summarize([ps_seconds[s] for s in measured if phases[s] == name])
                for name in dict.fromkeys(phases[s] for s in measured)}
    options = {k: ("<untrained, written by ps_step>" if k in ("predictor", "wnn") and v else v)
               for k, v in method.opts.to_json().items()}  # the file is a temporary one
    return {"model": model_name, "parameters": model.layout.total, "pushed": model.layout.pushed, "workers": workers,
            "method": method_name, "method_options": options, "warmup_steps": warmup, "measured_steps": steps,
            "exchanges_per_step": {method.phase_name(p): len(ops) for p, ops in graph.step_ops.items()},
            "ps": summarize([ps_seconds[s] for s in measured]), "ps_by_phase": by_phase,
            "worker": summarize([w["step_seconds"][s] for w in worker_results for s in measured]),
            "bytes_up_per_worker_step": spread([w["bytes_up"][s] for w in worker_results for s in measured]),
            "bytes_down_per_worker_step": spread([w["bytes_down"][s] for w in worker_results for s in measured]),
            "predictor_weights": predictor_weights(method),
            # Calls TensorFlow aborted ambiguously that the workers asked about and recovered (a step with one
            # is slower by the asking): 0 in a clean run.
            "recovered_calls": sum(w["recovered_calls"] for w in worker_results),
            "ps_step_seconds": [ps_seconds[s] for s in measured],
            "traced_step": {"ms": 1000 * ps_seconds[-1], "ms_by_op_type": op_times(session.graph, traces)}}


def predictor_weights(method) -> int | None:
    """Values in the network the PS runs on the average: MP²'s predictor, WNN's nowcasters; None for the others."""
    if method.name == "mp2" and method.opts.prediction == "predictor":
        return sum(int(np.prod(v.shape)) for v in method.predictor.weight_vars.values())
    if method.name == "wnn":
        from wnn import network

        return len(network.KINDS) * network.count()
    return None


def op_times(graph, traces: list) -> dict[str, float]:
    """Milliseconds spent per op type in the traced step's exchanges (summed over its nodes), largest first."""
    by_type: dict[str, float] = {}
    for metadata in traces:
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                try:
                    kind = graph.get_operation_by_name(node.node_name).type
                except (KeyError, ValueError):  # runtime-made nodes (_SOURCE, sends and receives)
                    kind = node.node_name
                by_type[kind] = by_type.get(kind, 0.0) + node.all_end_rel_micros / 1000
    return dict(sorted(by_type.items(), key=lambda item: -item[1]))


def _worker_result(proc: subprocess.Popen, log_dir: Path) -> dict:
    out, _ = proc.communicate(timeout=TIMEOUT)
    lines = [line for line in out.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"a worker exited with code {proc.returncode} without its times (see {log_dir}/worker-*.log)")
    return json.loads(lines[-1][len(RESULT_TAG):])


# --- the whole benchmark ----------------------------------------------------------------------------
def machine() -> dict:
    import tensorflow as tf

    return {"cpu": provenance.cpu_model(), "cores": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")),
            "python": platform.python_version(), "tensorflow": tf.__version__, "numpy": np.__version__,
            "os": platform.platform()}


def _bytes(spread_: dict) -> str:
    low, high = spread_["min"], spread_["max"]
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def table(rows: list[dict]) -> str:
    lines = ["| model | workers | method | PS ms/step median | PS ms/step p90 | worker push->reply ms median | "
             "bytes up per worker step | bytes down per worker step | predictor weights |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        weights = "" if r["predictor_weights"] is None else f"{r['predictor_weights']:,}"
        lines.append(f"| {r['model']} | {r['workers']} | {r['method']} | {r['ps']['median_ms']:.1f} | {r['ps']['p90_ms']:.1f} | "
                     f"{r['worker']['median_ms']:.1f} | {_bytes(r['bytes_up_per_worker_step'])} | "
                     f"{_bytes(r['bytes_down_per_worker_step'])} | {weights} |")
    return "\n".join(lines)


def _steps(n: int) -> str:
    return f"{n} step" + ("" if n == 1 else "s")


def readme(command: str, host: dict, rows: list[dict], steps: int, warmup: int) -> str:
    phased = [f"- {r['model']}, {r['workers']} workers, {r['method']}: "
              + ", ".join(f"{name} {s['median_ms']:.1f} ms ({_steps(s['steps'])})" for name, s in r["ps_by_phase"].items())
              for r in rows if len(r["ps_by_phase"]) > 1]
    return "\n".join([
        "# PS time per step", "",
        "Produced by `benchmarks/ps_step.py` (its docstring says exactly what is timed and why). Command:", "",
        "```", command, "```", "",
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['gpus']} GPUs; Python {host['python']}, "
        f"TensorFlow {host['tensorflow']}, numpy {host['numpy']}; {host['os']}. 1-minute load average "
        f"{host['load_average_1min']['start']:.1f} at the start, {host['load_average_1min']['end']:.1f} at the end.", "",
        f"Over {_steps(steps)} measured (after {warmup} warm-up). \"PS ms/step\" is the PS's time from every payload "
        f"being on the PS to the last reply enqueued, summed over a step's exchanges; the worker column is what a worker "
        f"sees from its first push to its last reply (all workers, all measured steps); bytes are one worker's per step, "
        f"each way, the reply's control word included; predictor weights: MP²'s predictor, WNN's three nowcasters.", "",
        table(rows), "",
        *(["PS ms/step by phase (median):", "", *phased, ""] if phased else []),
        "Where a step's time goes: one extra step per configuration, traced op by op (tracing slows it; "
        "milliseconds summed over each op type's nodes, which may overlap, the largest five):", "",
        *[f"- {r['model']}, {r['workers']} workers, {r['method']}: traced step {r['traced_step']['ms']:.1f} ms; "
          + ", ".join(f"{kind} {ms:.1f}" for kind, ms in list(r["traced_step"]["ms_by_op_type"].items())[:5])
          for r in rows], "",
        "Raw per-step times: results.json.", ""])


def untrained_file(method: str, model_name: str, directory: Path) -> str | None:
    """An untrained predictor (MP²) or nowcaster (WNN) for `model_name` in `directory`; None for other methods."""
    import models
    from runtime import flags

    push = flags.ps_parser("").parse_args(["--model", model_name, "--method", method]).push  # the method's default
    layout = models.get(model_name, CLASSES, push=push).layout
    if method == "mp2":
        from predictor import Predictor, save_checkpoint

        path = directory / "untrained-predictor.npz"
        save_checkpoint(str(path), layout, Predictor(layout, seed=0).numpy_weights(), {"note": "untrained, for timing"})
        return str(path)
    if method == "wnn":
        import wnn
        from wnn import network

        path = directory / "untrained-wnn.npz"
        # Spacing 1: the PS records every step and jumps after every fifth recording.
        wnn.save(path, {kind: network.init(seed=0) for kind in network.KINDS},
                 {"model": layout.model, "spacing_steps": 1, "note": "untrained, for timing"})
        return str(path)
    return None


def run_all(args: argparse.Namespace) -> None:
    from helpers import npzio

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python", "benchmarks/ps_step.py", *provenance.portable_argv(sys.argv[1:], out)])
    rows, load_at_start = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ps_step-") as tmp:
        files = {method: untrained_file(method, args.model, Path(tmp)) for method in args.methods}
        for workers in args.workers:
            for method in args.methods:  # one configuration at a time: the machine is shared
                print(f"ps_step: {args.model}, {workers} workers, {method} ...", flush=True)
                log_dir = Path(tmp) / f"{workers}-{method}"
                log_dir.mkdir()
                cmd = [*SELF, "--role", "ps", "--model", args.model, "--workers", str(workers),
                       "--methods", method, "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--log-dir", str(log_dir)] + (["--method-file", files[method]] if files[method] else [])
                done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      stdin=subprocess.DEVNULL)
                lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
                if done.returncode != 0 or not lines:
                    tail = "\n".join(done.stdout.splitlines()[-15:])
                    for log in sorted(log_dir.glob("worker-*.log")):
                        tail += f"\n--- {log.name}:\n" + "\n".join(log.read_text().splitlines()[-5:])
                    sys.exit(f"ps_step: error: the {workers}-worker {method} run failed (exit {done.returncode}):\n{tail}")
                rows.append(json.loads(lines[-1][len(RESULT_TAG):]))
                r = rows[-1]
                print(f"ps_step:   PS {r['ps']['median_ms']:.1f} ms per step (p90 {r['ps']['p90_ms']:.1f}), "
                      f"worker push->reply {r['worker']['median_ms']:.1f} ms", flush=True)
    host = {**machine(), "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]}}
    print(table(rows), flush=True)
    npzio.write_json(out / "results.json", {"command": command, "machine": host, "results": rows,
                                           "provenance": provenance.record(out)})
    (out / "README.md").write_text(readme(command, host, rows, args.steps, args.warmup))
    print(f"ps_step: wrote {out / 'results.json'} and {out / 'README.md'}", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    import models

    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=models.NAMES)
    p.add_argument("--workers", type=argtypes.positive_int, nargs="+", default=[4, 8], help="worker counts to measure")
    p.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=["baseline", "mp2"],
                   help="methods to measure, each with its default options")
    p.add_argument("--steps", type=argtypes.positive_int, default=20, help="measured steps per configuration")
    p.add_argument("--warmup", type=argtypes.nonnegative_int, default=3, help="unmeasured steps first")
    p.add_argument("--out", default=str(ROOT / "runs" / "ps_step"), help="where results.json and README.md go")
    # Internal: the processes this script starts for itself.
    for flag in ("--role", "--ps-host", "--worker-hosts", "--index", "--method-file", "--log-dir", "--phase"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = parse()
    if options.role == "worker":
        work(options.ps_host, options.worker_hosts.split(","), int(options.index), options.model, options.methods[0],
             options.steps, int(options.phase))
    elif options.role == "ps":
        outcome = serve(options.model, options.methods[0], options.workers[0], options.warmup, options.steps,
                        options.method_file, Path(options.log_dir))
        print(RESULT_TAG + json.dumps(outcome), flush=True)
        from runtime.cluster import exit_now

        exit_now(0)
    else:
        run_all(options)
