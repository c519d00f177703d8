"""The PS's time per step, before and after the in-graph PS: the old numpy path against runtime.ps.PSGraph.

    .venv/bin/python benchmarks/ps_step.py --model resnet18 --workers 4 8 --methods baseline mp2 --steps 20

Before (the PS up to the runtime redesign, reimplemented here from its code): per step one session
call per worker dequeuing its payload into numpy, each with its own deadline; np.mean of the
payloads; for MP² one more session call running the predictor on the mean; one session call
feeding the reply to every worker's reply queue. After: the real PSGraph built with the real
method classes exactly as mp2_ps.py builds them, one session run per step. Both paths serve the
same cluster, the same queues (runtime.wire.Wire) and, for MP², the same untrained predictor
checkpoint (predictor.Predictor(layout, seed=0)); the timing does not depend on its weights. The
old replies carried no control word; here they carry the current one (16 bytes) because the
workers read the current wire.

What "PS time per step" means here. The workers are real processes, each with its own
tf.distribute.Server on 127.0.0.1, that do no training: they enqueue a precomputed payload of the
method's size (held in a variable on the worker, as a real worker's model is) and wait for the
reply, as fast as they can. Timing the PS's step from when it starts waiting would charge it the
workers' pushes; pre-filling cannot help either, since a worker sends step s+1 only after it has
its reply to step s. So before each step the PS polls the sizes of the workers' queues until every
payload of that step is on the PS, and times from there until its step has enqueued the last
reply: pure PS work (dequeue, aggregate, predict, reply), with every worker idle and waiting.

Both paths run in one PS process against the same workers, alternating step by step after a few
warm-up steps each, so background load on a shared machine falls on both alike. The workers time
push -> reply for every step (the barrier, the polling and the PS's step), reported per path too.
As a check that the old path is reimplemented faithfully, both paths' resulting global models are
compared (every worker pushes the same payload each step, so they must agree). One extra step of
the after path, unmeasured, is traced op by op to show where its time goes.

Writes results.json and README.md (the command, the machine, the table) to --out.
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
from pathlib import Path

import numpy as np

import argtypes
import provenance

ROOT = Path(__file__).resolve().parent.parent
# Its own PS and worker processes run as a module from ROOT: this checkout's code, installed or not.
SELF = [sys.executable, "-m", "benchmarks.ps_step"]

PATHS = ("before", "after")
METHOD_NAMES = ("baseline", "mp2")
CLASSES = 10  # CIFAR-10 / Fashion-MNIST: ResNet-18 then has 3,139,274 parameters
RESULT_TAG = "ps_step result: "
TIMEOUT = 300.0  # seconds any one blocking call may take before the run is declared stuck
POLL_SECONDS = 0.0005


def schedule(warmup: int, steps: int) -> list[str]:
    """The path of every step: `warmup` steps of each, then `steps` measured steps of each, alternating."""
    return [PATHS[i % 2] for i in range(2 * (warmup + steps))]


def up_size(layout, method: str) -> int:
    """Floats a worker pushes per step: the whole model (baseline) or the pushed group (MP², partial phase)."""
    return layout.pushed if method == "mp2" else layout.total


def summarize(seconds: list[float]) -> dict:
    ms = [1000 * s for s in seconds]
    return {"median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms), "min_ms": min(ms), "max_ms": max(ms),
            "steps": len(ms)}


# --- the old PS (before the redesign), faithfully ---------------------------------------------------
class OldPS:
    """The PS's step as it was: payloads into numpy one worker at a time, np.mean, the reply fed back."""

    def __init__(self, session, wire, layout, device: str, predictor_path: str | None) -> None:
        import tensorflow as tf

        from runtime.wire import CONTROL_DTYPE

        self.session, self.workers = session, wire.workers
        self._gather = [q.dequeue() for q in wire.up]
        self._reply = tf.compat.v1.placeholder(tf.float32, None)
        self._control = tf.compat.v1.placeholder(CONTROL_DTYPE, [2])
        # The method's down tensors after the model (MP²'s predictor weights) stay empty, as in a full broadcast.
        extra = [tf.zeros([0], dtype) for dtype in wire.down_dtypes[1:-1]]
        self._broadcast = [q.enqueue([self._reply, *extra, self._control]) for q in wire.down]
        self.predict = None
        if predictor_path:
            from predictor import Predictor, load_checkpoint

            weights, _ = load_checkpoint(predictor_path, layout)
            with tf.device(device):
                pushed = tf.compat.v1.placeholder(tf.float32, [layout.pushed], name="pushed_average")
                net = Predictor(layout, weights=weights)
                full = net(pushed)
            session.run(tf.compat.v1.variables_initializer(net.variables))
            self.predict = lambda vector: session.run(full, {pushed: vector})
        self.vector = None

    def step(self, timeout: float, next_phase: int) -> None:
        payloads = self._gather_all(timeout)
        average = np.mean([p[0] for p in payloads], axis=0, dtype=np.float32)
        self.vector = self.predict(average) if self.predict else average
        self._send(self.vector, next_phase)

    def _gather_all(self, timeout: float) -> list[list[np.ndarray]]:
        from runtime import deadline

        payloads = []
        end = time.monotonic() + timeout
        for index, dequeue in enumerate(self._gather):
            got = deadline.run(self.session, dequeue, seconds=max(0.001, end - time.monotonic()),
                               what=f"waiting for worker {index}")
            payloads.append(got if isinstance(got, list) else [got])
        return payloads

    def _send(self, reply: np.ndarray, next_phase: int) -> None:
        from runtime import deadline

        feed = {self._reply: reply, self._control: np.array([next_phase, 0], np.int64)}
        deadline.run(self.session, self._broadcast, feed, seconds=60, what="sending the reply")


# --- a worker that only pushes and pulls ----------------------------------------------------------
def work(ps_host: str, worker_hosts: list[str], index: int, model_name: str, method: str, steps: int) -> None:
    import tensorflow as tf

    import models
    from runtime import cluster, deadline
    from runtime.methods import METHODS
    from runtime.wire import Wire, as_list

    tf.compat.v1.disable_eager_execution()
    spec = cluster.Cluster((ps_host,), tuple(worker_hosts))
    server = cluster.start_server(spec, "worker", index)
    layout = models.get(model_name, CLASSES).layout
    wire = Wire(len(worker_hosts), METHODS[method].up_dtypes, METHODS[method].down_dtypes)
    with tf.device(f"/job:worker/task:{index}"):
        initial = tf.compat.v1.placeholder(tf.float32, [up_size(layout, method)])
        payload = tf.Variable(initial, trainable=False, name="payload")
        received = tf.Variable(tf.zeros([layout.total]), trainable=False, name="received")
        push = wire.up[index].enqueue([payload.read_value()])
        reply = as_list(wire.down[index].dequeue())
        with tf.control_dependencies([received.assign(reply[0])]):  # the reply lands in worker memory
            pull = tf.identity(reply[-1])
    cluster.wait_for_port(ps_host, 60, "the PS")
    session = cluster.session(server, "worker", index, 1)
    values = np.random.default_rng(index).standard_normal(up_size(layout, method), dtype=np.float32) * 0.01
    session.run([payload.initializer, received.initializer], {initial: values})
    times = []
    for step in range(steps):
        started = time.perf_counter()
        deadline.run(session, push, seconds=TIMEOUT, what=f"worker {index} pushing step {step + 1}")
        deadline.run(session, pull, seconds=TIMEOUT, what=f"worker {index} waiting for reply {step + 1}")
        times.append(time.perf_counter() - started)
    print(RESULT_TAG + json.dumps({"index": index, "step_seconds": times}), flush=True)
    cluster.exit_now(0)


# --- the PS: both paths, alternating ---------------------------------------------------------------
def serve(model_name: str, method_name: str, workers: int, warmup: int, steps: int, predictor_path: str | None,
          log_dir: Path) -> dict:
    import tensorflow as tf

    import models
    from runtime import cluster, flags
    from runtime.ps import PSGraph
    from runtime.wire import Wire

    tf.compat.v1.disable_eager_execution()
    ports = cluster.free_ports(workers + 1)
    spec = cluster.Cluster((f"127.0.0.1:{ports[0]}",), tuple(f"127.0.0.1:{p}" for p in ports[1:]))
    server = cluster.start_server(spec, "ps", 0)
    session = cluster.session(server, "ps", 0, 1)  # mp2_ps.py's default --threads

    # Built as mp2_ps.py builds it: its flags, its method factory, its graph.
    plan = schedule(warmup, steps) + ["trace"]  # one last, unmeasured step traced op by op
    argv = ["--model", model_name, "--method", method_name] + (["--predictor", predictor_path] if predictor_path else [])
    args = flags.ps_parser("").parse_args(argv)
    model = models.get(args.model, CLASSES, push=args.push)
    method = flags.build_method(args, model, workers, steps_per_epoch=len(plan))
    method.prepare_ps(args, dataset=None)  # an offline predictor (or none) needs no data
    wire = Wire(workers, method.up_dtypes, method.down_dtypes)
    graph = PSGraph(model, method, wire, cluster.PS_DEVICE, args.verify_sync)
    graph.initialise(session, model.init_vector(args.seed))
    old = OldPS(session, wire, model.layout, cluster.PS_DEVICE, predictor_path)
    all_present = tf.reduce_all(tf.stack([q.size() for q in wire.up]) >= 1)

    procs = []
    for index in range(workers):
        with open(log_dir / f"worker-{index}.log", "w") as log:  # the child keeps its own handle
            procs.append(subprocess.Popen(
                [*SELF, "--role", "worker", "--ps-host", spec.ps[0], "--worker-hosts",
                 ",".join(spec.workers), "--index", str(index), "--model", model_name, "--methods", method_name,
                 "--steps", str(len(plan))],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True))
    try:
        ps_seconds = []
        for step, path in enumerate(plan):
            end = time.monotonic() + TIMEOUT
            while not session.run(all_present):
                if time.monotonic() > end or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"step {step + 1}: a worker stopped pushing (see {log_dir}/worker-*.log)")
                time.sleep(POLL_SECONDS)
            phase = method.next_phase(step)
            following = method.next_phase(step + 1)
            started = time.perf_counter()
            if path == "before":
                old.step(TIMEOUT, following)
            elif path == "trace":
                trace = tf.compat.v1.RunMetadata()
                session.run(graph.step_ops[phase], {graph.step: step, graph.next_phase: following, graph.exchange: step},
                            options=tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
                            run_metadata=trace)
            else:
                graph.run_step(session, step, phase, following, TIMEOUT)
                method.after_step(session, step, phase)
            ps_seconds.append(time.perf_counter() - started)
        worker_seconds = [_worker_result(p, log_dir) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    agree = float(np.max(np.abs(old.vector - graph.model_value(session))))
    measured = range(2 * warmup, len(plan))
    result = {"model": model_name, "parameters": model.layout.total, "workers": workers, "method": method_name,
              "up_floats": up_size(model.layout, method_name), "reply_floats": model.layout.total,
              "warmup_steps_each": warmup, "measured_steps_each": steps, "paths_max_abs_difference": agree}
    for path in PATHS:
        mine = [s for s in measured if plan[s] == path]
        result[path] = {"ps": summarize([ps_seconds[s] for s in mine]),
                        "worker": summarize([w[s] for w in worker_seconds for s in mine]),
                        "ps_step_seconds": [ps_seconds[s] for s in mine]}
    result["ratio"] = result["after"]["ps"]["median_ms"] / result["before"]["ps"]["median_ms"]
    result["after_traced_step"] = {"ms": 1000 * ps_seconds[-1], "ms_by_op_type": op_times(session.graph, trace)}
    return result


def op_times(graph, metadata) -> dict[str, float]:
    """Milliseconds spent per op type in one traced step (summed over its nodes), largest first."""
    by_type: dict[str, float] = {}
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            try:
                kind = graph.get_operation_by_name(node.node_name).type
            except (KeyError, ValueError):  # runtime-made nodes (_SOURCE, sends and receives)
                kind = node.node_name
            by_type[kind] = by_type.get(kind, 0.0) + node.all_end_rel_micros / 1000
    return dict(sorted(by_type.items(), key=lambda item: -item[1]))


def _worker_result(proc: subprocess.Popen, log_dir: Path) -> list[float]:
    out, _ = proc.communicate(timeout=TIMEOUT)
    lines = [line for line in out.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"a worker exited with code {proc.returncode} without its times (see {log_dir}/worker-*.log)")
    return json.loads(lines[-1][len(RESULT_TAG):])["step_seconds"]


# --- the whole benchmark ----------------------------------------------------------------------------
def machine() -> dict:
    import tensorflow as tf

    return {"cpu": provenance.cpu_model(), "cores": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")),
            "python": platform.python_version(), "tensorflow": tf.__version__, "numpy": np.__version__,
            "os": platform.platform()}


def table(rows: list[dict]) -> str:
    lines = ["| model | workers | method | before ms/step | after ms/step | ratio | worker step before ms | worker step after ms |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['workers']} | {r['method']} | {r['before']['ps']['median_ms']:.1f} | "
                     f"{r['after']['ps']['median_ms']:.1f} | {r['ratio']:.2f} | {r['before']['worker']['median_ms']:.1f} | "
                     f"{r['after']['worker']['median_ms']:.1f} |")
    return "\n".join(lines)


def readme(command: str, host: dict, rows: list[dict], steps: int, warmup: int) -> str:
    target = [r for r in rows if r["model"] == "resnet18" and r["workers"] == 8]
    verdicts = [f"- ResNet-18, 8 workers, {r['method']}: after / before = {r['ratio']:.2f} "
                f"({'meets' if r['ratio'] <= 0.5 else 'misses'} the target of at most 0.5)" for r in target]
    return "\n".join([
        "# PS time per step: before and after the in-graph PS", "",
        "Produced by `benchmarks/ps_step.py` (its docstring says exactly what is timed and why). Command:", "",
        "```", command, "```", "",
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['gpus']} GPUs; Python {host['python']}, "
        f"TensorFlow {host['tensorflow']}, numpy {host['numpy']}; {host['os']}. The machine was shared with other "
        f"work while this ran (1-minute load average {host['load_average_1min']['start']:.1f} at the start, "
        f"{host['load_average_1min']['end']:.1f} at the end), so absolute times are noisy; both paths alternate step "
        f"by step, so they saw the same load.", "",
        f"Medians over {steps} measured steps per path (after {warmup} warm-up steps each). \"ms/step\" is the PS's time "
        f"from every payload being on the PS to the last reply enqueued; ratio = after / before; the worker columns are "
        f"what a worker sees from its push to its reply (all workers, all measured steps).", "",
        table(rows), "",
        *(verdicts or ["- (no ResNet-18 8-worker configuration in this run)"]), "",
        "Where the after step's time goes: one extra step per configuration, traced op by op (tracing slows it; "
        "milliseconds summed over each op type's nodes, which may overlap, the largest five):", "",
        *[f"- {r['model']}, {r['workers']} workers, {r['method']}: traced step {r['after_traced_step']['ms']:.1f} ms; "
          + ", ".join(f"{kind} {ms:.1f}" for kind, ms in list(r["after_traced_step"]["ms_by_op_type"].items())[:5])
          for r in rows], "",
        "Raw per-step times: results.json.", ""])


def run_all(args: argparse.Namespace) -> None:
    import models
    from predictor import Predictor, save_checkpoint

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python", "benchmarks/ps_step.py", *provenance.portable_argv(sys.argv[1:], out)])
    rows, load_at_start = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ps_step-") as tmp:
        predictor_path = None
        if "mp2" in args.methods:
            layout = models.get(args.model, CLASSES).layout
            predictor_path = str(Path(tmp) / "untrained-predictor.npz")
            save_checkpoint(predictor_path, layout, Predictor(layout, seed=0).numpy_weights(), {"note": "untrained, for timing"})
        for workers in args.workers:
            for method in args.methods:  # one configuration at a time: the machine is shared
                print(f"ps_step: {args.model}, {workers} workers, {method} ...", flush=True)
                log_dir = Path(tmp) / f"{workers}-{method}"
                log_dir.mkdir()
                cmd = [*SELF, "--role", "ps", "--model", args.model, "--workers", str(workers),
                       "--methods", method, "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--log-dir", str(log_dir)] + (["--predictor", predictor_path] if method == "mp2" else [])
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
                print(f"ps_step:   PS before {r['before']['ps']['median_ms']:.1f} ms, after {r['after']['ps']['median_ms']:.1f} ms "
                      f"(ratio {r['ratio']:.2f})", flush=True)
    host = {**machine(), "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]}}
    print(table(rows), flush=True)
    import npzio

    npzio.write_json(out / "results.json", {"command": command, "machine": host, "results": rows,
                                           "provenance": provenance.record(out)})
    (out / "README.md").write_text(readme(command, host, rows, args.steps, args.warmup))
    print(f"ps_step: wrote {out / 'results.json'} and {out / 'README.md'}", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    import models

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=models.NAMES)
    p.add_argument("--workers", type=argtypes.positive_int, nargs="+", default=[4, 8], help="worker counts to measure")
    p.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES))
    p.add_argument("--steps", type=argtypes.positive_int, default=20, help="measured steps per path")
    p.add_argument("--warmup", type=argtypes.nonnegative_int, default=3, help="unmeasured steps per path first")
    p.add_argument("--out", default=str(ROOT / "results" / "ps_step"), help="where results.json and README.md go")
    # Internal: the processes this script starts for itself.
    for flag in ("--role", "--ps-host", "--worker-hosts", "--index", "--predictor", "--log-dir"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = parse()
    if options.role == "worker":
        work(options.ps_host, options.worker_hosts.split(","), int(options.index), options.model, options.methods[0],
             options.steps)
    elif options.role == "ps":
        outcome = serve(options.model, options.methods[0], options.workers[0], options.warmup, options.steps,
                        options.predictor, Path(options.log_dir))
        print(RESULT_TAG + json.dumps(outcome), flush=True)
        from runtime.cluster import exit_now

        exit_now(0)
    else:
        run_all(options)
