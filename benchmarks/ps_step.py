"""The PS's time per step, for any of the project's methods: the runtime's own PS and worker loops, the workers'
training replaced by a cheap stand-in.

    .venv/bin/python benchmarks/ps_step.py --model resnet18 --workers 4 8 --methods baseline mp2 topk dgc powersgd --steps 20

What runs. One PS process and N worker processes, each with its own tf.distribute.Server on 127.0.0.1, built
as mp2_ps.py and mp2_worker.py build them (the training flags, flags.build_method with the method's default
options, runtime.wire.Wire, runtime.ps.PSGraph and PSLink, runtime.worker.WorkerGraph) and driven by the same
loops: runtime/ps_loop.py's PSLoop and runtime/worker_loop.py's WorkerLoop (admission, each step's exchanges,
the epoch's reports, evaluation and checkpoint, the workers' "done"). The run is one epoch of synthetic images,
one per worker and step, sized so that it has --warmup + --steps + 1 exchanging steps (local SGD's, SparseLoCo's
and Streaming DiLoCo's steps between syncs run too, without exchange). MP² runs with an untrained predictor
checkpoint (predictor.Predictor(layout, seed=0)) and WNN with an untrained nowcaster that records every step (so
its steps are records, every fifth a jump): the timing does not depend on their weights. The one-time study of
the PS before and after its redesign (results/ps_step/) was made by this script's earliest form, which had the
old PS too (`git show f6324a8:benchmarks/ps_step.py`).

The workers do not train: WorkerGraph(simulated=True) builds no forward or backward pass, and every gradient
the method asks for is a fixed random tensor drawn once per worker. Everything after that is the method's own
worker graph (its optimizer step, compression and error feedback, its payload) and the runtime's exchange, so
each method's payload and reply are its own (DGC's counts vary with the gradients, as in a run). Each worker's
gradients differ, so the sparse methods' average, and with it their reply, has up to N·k entries.

What "PS time per step" means here. Timing the PS from when it starts waiting would charge it the workers'
pushes; pre-filling cannot help either, since a worker sends step s+1 only after it has its reply to step s.
So before each exchange the PS (PSGraph.execute, the hook this script overrides) polls the sizes of the workers'
queues until every payload of that exchange is on the PS, and times from there until the exchange's session run
has enqueued the last reply: pure PS work (dequeue, aggregate, update, predict, reply), with every worker idle
and waiting. A step's time is the sum over its exchanges, plus the method's bookkeeping after it
(Method.after_step). The workers time each exchanging step from the start of its push (the stand-in update,
staging, sending) to the reply applied, and count the bytes they push and receive as the runtime counts them
(the reply's control word included). The last exchanging step, unmeasured, is traced op by op to show where its
time goes. A call that gRPC delivered twice, or that TensorFlow aborted without naming a cause, is asked about
and recovered by the runtime's worker (runtime/worker.py); results.json counts such calls per configuration
(`recovered_calls`, 0 in a clean run: a step with one is slower by the asking).

Writes results.json (with provenance) and README.md (the command, the machine, the table) to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from helpers import argtypes, provenance

ROOT = Path(__file__).resolve().parent.parent
# Its own PS and worker processes run as a module from ROOT: this checkout's code, installed or not.
SELF = [sys.executable, "-m", "benchmarks.ps_step"]

FILE_FLAG = {"mp2": "--predictor", "wnn": "--wnn"}  # the methods that read a file, and its flag
CLASSES = 10  # CIFAR-10 / Fashion-MNIST: ResNet-18 then has 3,139,274 parameters
TEST_IMAGES = 10  # the PS evaluates the model once, at the epoch's end: untimed, kept short
RESULT_TAG = "ps_step result: "
TIMEOUT = 300.0  # seconds any one blocking call may take before the run is declared stuck


def method_names() -> tuple[str, ...]:
    from runtime.methods import METHODS

    return tuple(METHODS)


@dataclass
class Setup:
    """What the PS and every worker build alike from the same flags (their RunConfigs then agree)."""

    args: argparse.Namespace
    model: Any
    method: Any
    dataset: Any
    config: Any
    steps_per_epoch: int


def epoch_length(build: Callable[[int], Any], exchanges: int) -> int:
    """The fewest steps S for which an epoch of S steps of the method `build(S)` has `exchanges` exchanging steps.

    An epoch's last step always exchanges, and one more step adds at most one exchange, so the count grows by 0
    or 1 with S and every count is met exactly."""
    def count(steps: int) -> int:
        method = build(steps)
        return sum(not method.is_local(s) for s in range(steps))

    high = exchanges
    while count(high) < exchanges:
        high *= 2
    low = exchanges  # count(S) <= S
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < exchanges else (low, middle)
    return low


def setup(model_name: str, method_name: str, workers: int, exchanges: int, method_file: str | None) -> Setup:
    """The run's flags, model, method (its default options), data and RunConfig, as mp2_ps.py and mp2_worker.py
    make them, for one epoch with `exchanges` exchanging steps."""
    import data.validation
    import models
    from data.synthesis import synthetic
    from runtime import flags

    argv = ["--model", model_name, "--method", method_name, "--dataset", "synthetic", "--epochs", "1",
            "--worker-batch", "1", "--validation-images", "0"]
    if method_file:
        argv += [FILE_FLAG[method_name], method_file]
    args = flags.ps_parser("").parse_args(argv)
    model = models.get(args.model, CLASSES, push=args.push)
    steps = epoch_length(lambda s: flags.build_method(args, model, workers, s), exchanges)
    method = flags.build_method(args, model, workers, steps)
    images = synthetic(model.input_shape, CLASSES, train_size=steps * workers * args.worker_batch,
                       test_size=TEST_IMAGES, seed=args.seed)
    dataset = data.validation.hold_out(images, 0)
    return Setup(args, model, method, dataset, flags.run_config(args, model, dataset, workers, method), steps)


def summarize(seconds: list[float]) -> dict:
    ms = sorted(1000 * s for s in seconds)
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return {"median_ms": statistics.median(ms), "p90_ms": p90, "mean_ms": statistics.fmean(ms), "min_ms": ms[0],
            "max_ms": ms[-1], "steps": len(ms)}


def spread(values: list[int]) -> dict:
    return {"median": statistics.median_low(values), "min": min(values), "max": max(values)}


# --- a worker: the runtime's worker loop, training replaced by a stand-in --------------------------
def work(ps_host: str, worker_hosts: list[str], index: int, model_name: str, method_name: str, exchanges: int,
         method_file: str | None, log_dir: Path) -> None:
    import tensorflow as tf

    import data
    from benchmarks.ps_step_timing import TimedWorker
    from runtime import cluster, deadline
    from runtime.rundir import RunDir
    from runtime.wire import Wire
    from runtime.worker import WorkerGraph
    from runtime.worker_loop import WorkerLoop, WorkerSettings

    def log(line: str) -> None:
        print(f"worker {index}: {line}", file=sys.stderr, flush=True)

    tf.compat.v1.disable_eager_execution()
    deadline.WHO = f"worker {index}"
    spec = cluster.Cluster((ps_host,), tuple(worker_hosts))
    server = cluster.start_server(spec, "worker", index, 1)
    built = setup(model_name, method_name, len(worker_hosts), exchanges, method_file)
    args, method = built.args, built.method
    method.prepare_worker(log=log)
    wire = Wire(len(worker_hosts), method.up_dtypes, method.down_dtypes)
    graph = TimedWorker(WorkerGraph(built.model, method, wire, index, method.run.lr, args.verify_sync, log=log,
                                    simulated=True))
    session = cluster.session(server, "worker", index, 1)
    settings = WorkerSettings(epochs=args.epochs, seed=args.seed, mixup=args.mixup, step_timeout=TIMEOUT,
                              connect_timeout=TIMEOUT, verify_sync=args.verify_sync, trace_steps=0)
    schedule = data.Schedule(len(built.dataset.train_x), len(worker_hosts), args.worker_batch, args.seed)
    code = WorkerLoop(graph, session, method, schedule, built.dataset, index, settings, RunDir(log_dir / "run"),
                      built.config.to_json(), ps_host, log=log).run()
    if code == 0:
        (log_dir / f"worker-{index}.json").write_text(json.dumps({
            "index": index, "step_seconds": graph.step_seconds, "bytes_up": graph.bytes_up,
            "bytes_down": graph.bytes_down, "recovered_calls": graph.retries}))
    cluster.exit_now(code)


# --- the PS: the runtime's PS loop, its exchanges timed ------------------------------------------------
def serve(model_name: str, method_name: str, workers: int, warmup: int, steps: int, method_file: str | None,
          log_dir: Path) -> dict:
    import tensorflow as tf

    from benchmarks.ps_step_timing import TimedPSGraph
    from runtime import cluster, flags
    from runtime.ps import PSLink
    from runtime.ps_loop import PSLoop, PSSettings, StartPoint
    from runtime.rundir import RunDir
    from runtime.wire import Wire

    def log(line: str) -> None:
        print(f"ps: {line}", flush=True)

    tf.compat.v1.disable_eager_execution()
    ports = cluster.free_ports(workers + 1)
    spec = cluster.Cluster((f"127.0.0.1:{ports[0]}",), tuple(f"127.0.0.1:{p}" for p in ports[1:]))
    server = cluster.start_server(spec, "ps", 0, 1)
    session = cluster.session(server, "ps", 0, 1)  # mp2_ps.py's default --threads

    exchanges = warmup + steps + 1  # the last one, unmeasured, traced op by op
    built = setup(model_name, method_name, workers, exchanges, method_file)
    args, model, method = built.args, built.model, built.method
    method.prepare_ps(flags.ps_context(args), built.dataset, log=log)
    wire = Wire(workers, method.up_dtypes, method.down_dtypes)
    procs: list[subprocess.Popen] = []
    graph = TimedPSGraph(model, method, wire, cluster.PS_DEVICE, args.verify_sync, traced=exchanges - 1,
                         alive=lambda: all(p.poll() is None for p in procs))
    vector = model.init_vector(args.seed)
    graph.initialise(session, vector)
    after_step = method.after_step  # the method's bookkeeping after a step is PS work too: timed with it

    def timed_after_step(session_, step: int, phase: int) -> None:
        started = time.perf_counter()
        after_step(session_, step, phase)
        graph.add(time.perf_counter() - started)

    method.after_step = timed_after_step
    for index in range(workers):
        with open(log_dir / f"worker-{index}.log", "w") as out:  # the child keeps its own handle
            procs.append(subprocess.Popen(
                [*SELF, "--role", "worker", "--ps-host", spec.ps[0], "--worker-hosts", ",".join(spec.workers),
                 "--index", str(index), "--model", model_name, "--methods", method_name, "--steps", str(steps),
                 "--warmup", str(warmup), "--log-dir", str(log_dir)] + (["--method-file", method_file] if method_file else []),
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    settings = PSSettings(epochs=args.epochs, steps_per_epoch=built.steps_per_epoch, step_timeout=TIMEOUT,
                          connect_timeout=TIMEOUT, checkpoint_every=0)
    loop = PSLoop(method, graph, PSLink(session, wire), session, RunDir(log_dir / "run"), built.dataset,
                  built.config, settings, StartPoint(vector), log=log)
    try:
        code = loop.run()
        if code:
            raise RuntimeError(f"the PS's loop stopped with exit code {code} (see {log_dir}/worker-*.log)")
        worker_results = [_worker_result(p, index, log_dir) for index, p in enumerate(procs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if len(graph.seconds) != exchanges:
        raise RuntimeError(f"the PS timed {len(graph.seconds)} exchanging steps, expected {exchanges}")
    ps_seconds, phases = graph.seconds, graph.phases
    measured = range(warmup, warmup + steps)
    by_phase = {name: summarize([ps_seconds[s] for s in measured if phases[s] == name])
                for name in dict.fromkeys(phases[s] for s in measured)}
    options = {k: ("<untrained, written by ps_step>" if k in ("predictor", "wnn") and v else v)
               for k, v in method.opts.to_json().items()}  # the file is a temporary one
    return {"model": model_name, "parameters": model.layout.total, "pushed": model.layout.pushed, "workers": workers,
            "method": method_name, "method_options": options, "warmup_steps": warmup, "measured_steps": steps,
            "steps_per_epoch": built.steps_per_epoch,
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
            "traced_step": {"ms": 1000 * ps_seconds[-1], "ms_by_op_type": op_times(session.graph, graph.traces)}}


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


def _worker_result(proc: subprocess.Popen, index: int, log_dir: Path) -> dict:
    code = proc.wait(timeout=TIMEOUT)
    result = log_dir / f"worker-{index}.json"
    if code != 0 or not result.exists():
        raise RuntimeError(f"worker {index} exited with code {code} without its times (see {log_dir}/worker-{index}.log)")
    return json.loads(result.read_text())


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
    lines = ["| model | workers | method | PS ms/step median | PS ms/step p90 | worker step ms median | "
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


def readme(command: str, host: dict, rows: list[dict], steps: int, warmup: int, origin: dict) -> str:
    phased = [f"- {r['model']}, {r['workers']} workers, {r['method']}: "
              + ", ".join(f"{name} {s['median_ms']:.1f} ms ({_steps(s['steps'])})" for name, s in r["ps_by_phase"].items())
              for r in rows if len(r["ps_by_phase"]) > 1]
    commit = (origin["git"].get("commit") or "unknown") + (" (with uncommitted changes)" if origin["git"].get("dirty") else "")
    return "\n".join([
        "# PS time per step", "",
        "Produced by `benchmarks/ps_step.py` (its docstring says exactly what is timed and why). Command:", "",
        "```", command, "```", "",
        f"Commit: {commit}. Machine: {host['cpu']}, {host['cores']} cores, {host['gpus']} GPUs; Python {host['python']}, "
        f"TensorFlow {host['tensorflow']}, numpy {host['numpy']}; {host['os']}. 1-minute load average "
        f"{host['load_average_1min']['start']:.1f} at the start, {host['load_average_1min']['end']:.1f} at the end.", "",
        f"Over {_steps(steps)} measured (after {warmup} warm-up). \"PS ms/step\" is the PS's time from every payload "
        f"being on the PS to the last reply enqueued, summed over a step's exchanges, plus the method's bookkeeping after "
        f"it; the worker column is what a worker sees from the start of its push (a stand-in for training, then the "
        f"method's own update and payload) to its last reply applied (all workers, all measured steps); bytes are one "
        f"worker's per step, "
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
                      f"worker step {r['worker']['median_ms']:.1f} ms", flush=True)
    host = {**machine(), "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]}}
    print(table(rows), flush=True)
    origin = provenance.record(out)
    npzio.write_json(out / "results.json", {"command": command, "machine": host, "results": rows, "provenance": origin})
    (out / "README.md").write_text(readme(command, host, rows, args.steps, args.warmup, origin))
    print(f"ps_step: wrote {out / 'results.json'} and {out / 'README.md'}", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    import models

    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=models.NAMES)
    p.add_argument("--workers", type=argtypes.positive_int, nargs="+", default=[4, 8], help="worker counts to measure")
    p.add_argument("--methods", nargs="+", choices=method_names(), default=["baseline", "mp2"],
                   help="methods to measure, each with its default options")
    p.add_argument("--steps", type=argtypes.positive_int, default=20, help="measured steps per configuration")
    p.add_argument("--warmup", type=argtypes.nonnegative_int, default=3, help="unmeasured steps first")
    p.add_argument("--out", default=str(ROOT / "runs" / "ps_step"), help="where results.json and README.md go")
    # Internal: the processes this script starts for itself.
    for flag in ("--role", "--ps-host", "--worker-hosts", "--index", "--method-file", "--log-dir"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = parse()
    if options.role == "worker":
        work(options.ps_host, options.worker_hosts.split(","), int(options.index), options.model, options.methods[0],
             options.warmup + options.steps + 1, options.method_file, Path(options.log_dir))
    elif options.role == "ps":
        outcome = serve(options.model, options.methods[0], options.workers[0], options.warmup, options.steps,
                        options.method_file, Path(options.log_dir))
        print(RESULT_TAG + json.dumps(outcome), flush=True)
        from runtime.cluster import exit_now

        exit_now(0)
    else:
        run_all(options)
