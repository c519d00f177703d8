"""The scale benchmark on emulated hosts: time per step against workers and PS tasks, beside the link's bound.

    sudo nice -n 10 .venv/bin/python benchmarks/scale_hosts.py --workers 4 8 --ps-tasks 1 2 4 \\
        --methods baseline localsgd --out results/scale/hosts

Every run gets its own emulated hosts (benchmarks/emulated_hosts.py): each PS task and each worker in a network
namespace of its own, cabled by a veth pair to a switch, both ends of every cable shaped with tc tbf at --rate
(nothing sleeps: the kernel's shaper is the link). Each grid point (workers, PS tasks, method) runs twice: at
--rate, and unshaped on the same namespaces ("compute alone": the same processes, steps and exchanges, the
cables as fast as the machine copies bytes).

Time per step is measured in the steady state, from worker 0's progress lines: the benchmark notes its clock
when worker 0 prints "a/N" and "b/N" (a = N/4, b = 3N/4, each after that step's pull: the first step's start-up
and the last step's end are outside), and reads every cable's counters (at the switch ports) at the same two
moments. So the time per step and the bytes per link are those of the same window of steps (row "window_clock";
rows without it were timed on PS task 0's progress lines, which is the same for the baseline, every step a
barrier, and not for local SGD, whose PS passes the local steps at once). The worker records' own figure
(metrics.jsonl step_seconds over the steps, every step of the run) is kept beside it.

The link bound is computed from the exact bytes of one exchange: each worker pushes its slice of the model
to each PS task (4 bytes a float; runtime.shards.partition's shard sizes) and each task replies with that slice
and a 16-byte control word. PS task k's cable carries W·4·S_k bytes in and W·(4·S_k + 16) out; every worker's
4·S out and 4·S + 16·P in. Over a link of rate R:
  push then reply   max over links of (in + out)·8 / R   (what the runtime does: a task replies only after
                                                          every push to it came in)
  both directions   max over links of max(in, out)·8 / R (if the reply of one step overlapped the next push)
A window's bound is its exchanges times that, over its steps (local SGD exchanges every H-th step only).
The bytes on the cables (counters) include TCP/IP and gRPC framing, and any ACKs going the other way.

Needs root (ip netns, tc). Writes OUT/results.json (every run, with the provenance), OUT/results.csv,
OUT/results.md and OUT/scale-hosts.png; each run's directory and logs go under --runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks.emulated_hosts import UNSHAPED, SetupError, Topology, emulated_hosts, port_counters, rate_bits
from benchmarks.network_run import PORT, RunError, RunSpec, progress_line, read_run, run_children, supervise
from helpers import provenance

FLOAT_BYTES = 4
CONTROL_BYTES = 16  # the control word each PS task puts at the end of each reply: int64[2]
METHODS = {
    "baseline": ["--method", "baseline"],
    "localsgd": ["--method", "localsgd", "--sync-every", "16"],
    # Each PS task's part in 4 pieces sent in turn, the replies taken while the send runs (--chunks): both
    # directions of the PS's link busy at once.
    "baseline-c4": ["--method", "baseline", "--chunks", "4"],
    "baseline-c8": ["--method", "baseline", "--chunks", "8"],
    "baseline-c16": ["--method", "baseline", "--chunks", "16"],
}


def _flag(method: str, flag: str) -> int:
    """A setting's value in METHODS[method]'s flags, 1 when it is not given (every step syncs; one piece a task)."""
    flags = METHODS[method]
    return int(flags[flags.index(flag) + 1]) if flag in flags else 1


SYNC_EVERY = {m: _flag(m, "--sync-every") for m in METHODS}
CHUNKS = {m: _flag(m, "--chunks") for m in METHODS}  # pieces of each PS task's part of an exchange
# Worker 0's progress lines ("worker 0 epoch 1/1 8/32 loss=... (5.9s)"): printed after its step's pull, so a
# window between two of them holds whole steps as a worker lives them. (PS task 0's own lines would do for the
# baseline, whose every step is a barrier, but not for local SGD: the PS passes the local steps at once.)
CLOCK = "w0"
PROGRESS_LINE = re.compile(r"^worker 0 epoch (\d+)/(\d+) (\d+)/(\d+)\b")


# --- the bound ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkLoad:
    """The payload bytes one exchange puts on a host's cable: `into` the host and `out` of it."""
    link: str
    into: int
    out: int


def link_loads(shard_sizes: Sequence[int], workers: int, chunks: int = 1) -> list[LinkLoad]:
    """Each PS task's cable (ps0, ps1, ...) and a worker's (every worker's is the same) in one exchange of a
    method that pushes the whole model and gets it back (baseline, local SGD's syncs): every worker sends each
    task its slice (4 bytes a float) and each task sends every worker the slice and a control word per piece
    (`chunks` pieces a task with --chunks, else one)."""
    tasks, total = len(shard_sizes), sum(shard_sizes)
    loads = [LinkLoad(f"ps{k}", workers * FLOAT_BYTES * size, workers * (FLOAT_BYTES * size + CONTROL_BYTES * chunks))
             for k, size in enumerate(shard_sizes)]
    loads.append(LinkLoad("worker", FLOAT_BYTES * total + CONTROL_BYTES * tasks * chunks, FLOAT_BYTES * total))
    return loads


def link_bounds(loads: Sequence[LinkLoad], rate: int) -> dict:
    """Seconds one exchange needs at least on links of `rate` bits/s: push then reply (the most loaded link's
    two directions one after the other) and both directions busy at once (its larger direction), and which
    link that is for each."""
    ptr = max(loads, key=lambda l: l.into + l.out)
    both = max(loads, key=lambda l: max(l.into, l.out))
    return {"push_then_reply_s": 8 * (ptr.into + ptr.out) / rate, "push_then_reply_link": ptr.link,
            "both_directions_s": 8 * max(both.into, both.out) / rate, "both_directions_link": both.link}


def exchanges_between(first: int, last: int, steps_per_epoch: int, every: int) -> int:
    """Exchanging steps among global steps first..last-1 (every `every`-th step and the last of each epoch)."""
    from runtime.methods.base import syncs_at

    return sum(1 for g in range(first, last) if syncs_at(g, steps_per_epoch, every))


def shard_sizes(model: str, tasks: int) -> list[int]:
    import models
    from runtime.shards import partition

    return [s.size for s in partition(models.get(model).layout, tasks)]


# --- one run --------------------------------------------------------------------------------------------

@dataclass
class Probe:
    """Watches worker 0's lines: at its progress lines notes the time and every cable's counters."""
    topology: Topology
    marks: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, name: str, line: str) -> str | None:
        if name == CLOCK:
            match = PROGRESS_LINE.match(line.strip())
            if match:
                now = time.monotonic()
                counters = port_counters(self.topology)
                with self.lock:
                    self.marks.append({"t": now, "epoch": int(match[1]), "step": int(match[3]), "of": int(match[4]),
                                       "counters": counters})
        return progress_line(name, line)


def window(marks: list[dict]) -> tuple[dict, dict]:
    """The first and last progress marks of the run's first epoch: the steady-state window."""
    first = [m for m in marks if m["epoch"] == 1]
    if len(first) < 2:
        raise RunError(f"worker 0 printed {len(first)} progress line(s) in its first epoch; need 2 (more steps)")
    return first[0], first[-1]


def run_point(spec: RunSpec, ps_tasks: int, rate: str, timeout: float, commands: list[str]) -> dict:
    """One run of `spec` over `ps_tasks` PS tasks on emulated hosts at `rate`: what it measured."""
    # Afresh: an earlier run's files (its workers' states too) would make the PS refuse or resume.
    shutil.rmtree(spec.run_dir, ignore_errors=True)
    spec.run_dir.mkdir(parents=True)
    topology = Topology(f"mp2s{os.getpid() % 10**5}x{time.monotonic_ns() % 10**4}", spec.workers, rate,
                        ps_tasks=ps_tasks)
    setup: list[list[str]] = []
    with emulated_hosts(topology, log=setup):
        commands += [shlex.join(c) for c in setup]
        ps_hosts = [f"{topology.ps_address(k)}:{PORT}" for k in range(ps_tasks)]
        worker_hosts = [f"{topology.worker_address(i)}:{PORT}" for i in range(spec.workers)]
        children = run_children(spec, ps_hosts, worker_hosts, topology.hosts)
        commands += [shlex.join(child.command) for child in children]
        probe = Probe(topology)
        started = time.monotonic()
        supervise(children, spec.run_dir, timeout, echo=probe)
        elapsed = time.monotonic() - started
    summary, records = read_run(spec.run_dir)
    a, b = window(probe.marks)
    steps_per_epoch = summary["steps_per_epoch"]
    every = SYNC_EVERY[spec.method]
    exchanges = exchanges_between(a["step"], b["step"], steps_per_epoch, every)
    run_exchanges = exchanges_between(0, summary["steps"], steps_per_epoch, every)
    steps = b["step"] - a["step"]
    row = {
        "workers": spec.workers, "ps_tasks": ps_tasks, "method": spec.method, "rate": rate,
        "steps": summary["steps"], "exchanges": run_exchanges,
        "window": f"{a['step']}..{b['step']}", "window_clock": CLOCK, "window_steps": steps, "window_exchanges": exchanges,
        "s_per_step": (b["t"] - a["t"]) / steps,
        # The workers' own records: every step of the run (the first one's start-up included), mean over workers.
        "s_per_step_records": sum(r["step_seconds"] for r in records) / summary["steps"],
        "comm_s_per_step_records": sum(r["comm_seconds"] for r in records) / summary["steps"],
        "elapsed_s": elapsed,
        # What the runtime counted it sent (payload only), per worker and exchange of the run.
        "accounted_up_per_worker_exchange": summary["bytes_pushed_total"] / (spec.workers * run_exchanges),
        "accounted_down_per_worker_exchange": summary["bytes_pulled_total"] / (spec.workers * run_exchanges),
    }
    for host, link in ((topology.ps_hosts[0], "ps0"), (topology.worker_hosts[0], "w0"),
                       *((topology.ps_hosts[k], f"ps{k}") for k in range(1, ps_tasks))):
        for direction, key in (("in", "received"), ("out", "sent")):
            moved = b["counters"][host][key] - a["counters"][host][key]
            row[f"measured_{link}_{direction}_per_exchange"] = moved / exchanges if exchanges else None
    return row


# --- the grid -------------------------------------------------------------------------------------------

class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind through every finally, so the processes and namespaces go."""


def flags_for(args: argparse.Namespace, method: str, workers: int) -> list[str]:
    steps = args.local_steps if method == "localsgd" else args.steps
    return ["--model", args.model, "--fit-input", "--dataset", args.dataset, "--epochs", "1", "--validation-images", "0",
            "--worker-batch", str(args.worker_batch), "--train-images", str(steps * workers * args.worker_batch),
            "--seed", "0", *METHODS[method]]


def derive(row: dict, compute: dict | None, model: str, rate: str) -> dict:
    """The bound's columns for a shaped run's row (and the compute-alone run's time, if it ran)."""
    sizes = shard_sizes(model, row["ps_tasks"])
    loads = {l.link: l for l in link_loads(sizes, row["workers"], CHUNKS.get(row["method"], 1))}
    bounds = link_bounds(list(loads.values()), rate_bits(rate))
    per_step = row["window_exchanges"] / row["window_steps"]
    out = dict(row)
    out["largest_shard_floats"] = max(sizes)
    out["bound_exchange_push_then_reply_s"] = bounds["push_then_reply_s"]
    out["bound_exchange_both_directions_s"] = bounds["both_directions_s"]
    out["bound_link"] = bounds["push_then_reply_link"]
    out["bound_push_then_reply_s_per_step"] = bounds["push_then_reply_s"] * per_step
    out["bound_both_directions_s_per_step"] = bounds["both_directions_s"] * per_step
    for link, load in (*((k, l) for k, l in loads.items() if k != "worker"), ("w0", loads["worker"])):
        out[f"formula_{link}_in_per_exchange"] = load.into
        out[f"formula_{link}_out_per_exchange"] = load.out
    # The same bound from the bytes the cables carried (counters: headers, framing and ACKs included).
    measured = [LinkLoad(link, row[f"measured_{link}_in_per_exchange"], row[f"measured_{link}_out_per_exchange"])
                for link in ["w0", *(f"ps{k}" for k in range(row["ps_tasks"]))]
                if row.get(f"measured_{link}_in_per_exchange") is not None]
    if measured:
        wire = link_bounds(measured, rate_bits(rate))
        out["wire_bound_push_then_reply_s_per_step"] = wire["push_then_reply_s"] * per_step
        out["wire_bound_both_directions_s_per_step"] = wire["both_directions_s"] * per_step
        out["wire_over_formula_bytes"] = ((row["measured_ps0_in_per_exchange"] + row["measured_ps0_out_per_exchange"])
                                          / (loads["ps0"].into + loads["ps0"].out))
    # The most loaded link's bytes each way: the formula's and the counters' (per exchange).
    measured_name = "w0" if bounds["push_then_reply_link"] == "worker" else bounds["push_then_reply_link"]
    for d in ("in", "out"):
        out[f"bound_link_formula_{d}"] = out.get(f"formula_{measured_name}_{d}_per_exchange")
        out[f"bound_link_measured_{d}"] = row.get(f"measured_{measured_name}_{d}_per_exchange")
    out["compute_s_per_step"] = compute["s_per_step"] if compute else None
    out["vs_push_then_reply"] = row["s_per_step"] / out["bound_push_then_reply_s_per_step"]
    out["vs_both_directions"] = row["s_per_step"] / out["bound_both_directions_s_per_step"]
    if compute:
        out["vs_compute_plus_push_then_reply"] = row["s_per_step"] / (compute["s_per_step"]
                                                                      + out["bound_push_then_reply_s_per_step"])
        # An exchanging step's time, the window's other steps taken to cost what they cost unshaped (local SGD's
        # local steps); the baseline's steps all exchange, so it is its s/step.
        local = row["window_steps"] - row["window_exchanges"]
        out["exchanging_step_s"] = ((row["s_per_step"] * row["window_steps"] - compute["s_per_step"] * local)
                                    / row["window_exchanges"])
    return out


CSV_COLUMNS = ["made_by", "workers", "ps_tasks", "method", "rate", "steps", "exchanges", "window", "window_clock",
               "window_steps",
               "window_exchanges", "s_per_step", "s_per_step_records", "compute_s_per_step",
               "bound_push_then_reply_s_per_step", "bound_both_directions_s_per_step", "bound_link",
               "vs_push_then_reply", "vs_both_directions", "vs_compute_plus_push_then_reply", "exchanging_step_s",
               "wire_bound_push_then_reply_s_per_step", "wire_bound_both_directions_s_per_step", "wire_over_formula_bytes",
               "bound_exchange_push_then_reply_s", "bound_exchange_both_directions_s", "largest_shard_floats",
               "bound_link_formula_in", "bound_link_measured_in", "bound_link_formula_out", "bound_link_measured_out",
               "formula_ps0_in_per_exchange", "measured_ps0_in_per_exchange",
               "formula_ps0_out_per_exchange", "measured_ps0_out_per_exchange",
               "formula_w0_in_per_exchange", "measured_w0_in_per_exchange",
               "formula_w0_out_per_exchange", "measured_w0_out_per_exchange",
               "accounted_up_per_worker_exchange", "accounted_down_per_worker_exchange",
               "comm_s_per_step_records", "elapsed_s"]


def write_outputs(out: Path, rows: list[dict], computes: list[dict], origins: list[dict], failures: list[str],
                  model: str, rate: str, retried: list[str] | None = None) -> None:
    """results.json, results.csv, results.md and the plot. `origins`: the provenance of each invocation whose runs
    are here (a row's "made_by" is its index; --add appends one)."""
    out.mkdir(parents=True, exist_ok=True)
    failures = [provenance.portable(f) for f in failures]  # results/ is committed: no path of this machine
    record = {"provenance": origins, "rows": rows, "compute_alone": computes, "failures": failures,
              "retried": [provenance.portable(f) for f in retried or []]}
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    lines = []
    for i, origin in enumerate(origins):
        lines += [f"Run set {i + 1}:", "", *provenance.markdown_lines(origin), ""]
    lines += [
        f"{model} at {rate}. s/step: the steady-state window of worker 0's progress lines (of PS task 0's where the "
        "row's window_clock is ps; every step, local ones too). Exchanging step: the window's time less its local steps at their unshaped cost, per exchange (the "
        "baseline's s/step). Bounds: one exchange's most loaded link at the rate (the CSV has them per step too).", "",
        "| set | workers | PS tasks | method | s/step | compute alone (s/step, unshaped) | exchanging step (s) "
        "| bound: push then reply (s) | bound: both directions (s) | exchanging / push-then-reply | exchanging / both "
        "| most loaded link | bytes on it in / out, counters over formula |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]

    def cell(value, digits=2):
        return "" if value is None else f"{value:.{digits}f}"

    for r in rows:
        exchanging = r.get("exchanging_step_s")
        link = r["bound_link"] if r["bound_link"].startswith("ps") else "w0"
        wire = [r.get(f"measured_{link}_{d}_per_exchange") for d in ("in", "out")]
        formula = [r.get(f"formula_{link}_{d}_per_exchange") for d in ("in", "out")]
        ratio = " / ".join(f"{w / f:.3f}" for w, f in zip(wire, formula) if w is not None and f)
        lines.append(f"| {r.get('made_by', 0) + 1} | {r['workers']} | {r['ps_tasks']} | {r['method']} | "
                     f"{cell(r['s_per_step'])} | {cell(r.get('compute_s_per_step'))} | {cell(exchanging)} | "
                     f"{cell(r['bound_exchange_push_then_reply_s'])} | {cell(r['bound_exchange_both_directions_s'])} | "
                     f"{cell(exchanging and exchanging / r['bound_exchange_push_then_reply_s'])} | "
                     f"{cell(exchanging and exchanging / r['bound_exchange_both_directions_s'])} | {r['bound_link']} | "
                     f"{ratio} |")
    if failures:
        lines += ["", "Failed runs:", *(f"- {f}" for f in failures)]
    if retried:
        lines += ["", "Failed attempts of runs started again (results.json \"retried\"):", *(f"- {f}" for f in retried)]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(out / "scale-hosts.png", rows, model, rate)


def plot(path: Path, rows: list[dict], model: str, rate: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r["method"] for r in rows}, key=list(METHODS).index)
    if not methods:
        path.unlink(missing_ok=True)
        return
    fig, axes = plt.subplots(1, len(methods), figsize=(6 * len(methods), 4.5), squeeze=False)
    colours = {1: "tab:blue", 2: "tab:orange", 4: "tab:green", 8: "tab:red"}
    for ax, method in zip(axes[0], methods):
        for tasks in sorted({r["ps_tasks"] for r in rows if r["method"] == method}):
            pts = sorted((r for r in rows if r["method"] == method and r["ps_tasks"] == tasks), key=lambda r: r["workers"])
            xs = [r["workers"] for r in pts]
            c = colours.get(tasks, None)
            ax.plot(xs, [r["s_per_step"] for r in pts], "o-", color=c, label=f"{tasks} PS: measured")
            ax.plot(xs, [r["bound_push_then_reply_s_per_step"] for r in pts], "_--", color=c, markersize=14,
                    label=f"{tasks} PS: bound, push then reply")
            ax.plot(xs, [r["bound_both_directions_s_per_step"] for r in pts], "_:", color=c, markersize=14,
                    label=f"{tasks} PS: bound, both directions")
            if all(r.get("compute_s_per_step") is not None for r in pts):
                ax.plot(xs, [r["compute_s_per_step"] for r in pts], "x", color=c, markersize=9,
                        label=f"{tasks} PS: compute alone (unshaped)")
        ax.set_title(f"{method}: {model} at {rate}")
        ax.set_xlabel("workers")
        ax.set_ylabel("seconds per step (steady state)")
        ax.set_xticks(sorted({r["workers"] for r in rows}))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    p.add_argument("--ps-tasks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--rate", default="100mbit", help="tc rate of every cable, each direction")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--worker-batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=12, help="steps of a baseline run (one epoch)")
    p.add_argument("--local-steps", type=int, default=32, help="steps of a local SGD run (one epoch; H=16)")
    p.add_argument("--no-compute-alone", action="store_true", help="skip the unshaped runs")
    p.add_argument("--out", default="results/scale/hosts")
    p.add_argument("--runs", default="runs/scale-hosts")
    p.add_argument("--run-timeout", type=float, default=1200.0)
    p.add_argument("--retries", type=int, default=0,
                   help="start a run that failed again, up to this many times (the failures are kept in results.json)")
    p.add_argument("--add", action="store_true",
                   help="keep the runs already in OUT/results.json of grid points this invocation does not run")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite results.csv, results.md and the plot in --out from its results.json")
    return p.parse_args(argv)


def load(out: Path) -> dict:
    """OUT/results.json, its provenance a list (one per invocation; a file of one invocation has it bare)."""
    saved = json.loads((out / "results.json").read_text())
    if isinstance(saved["provenance"], dict):
        saved["provenance"] = [saved["provenance"]]
    for row in [*saved["rows"], *saved["compute_alone"]]:
        row.setdefault("made_by", 0)  # the first invocation's rows, written before rows named theirs
        row.setdefault("window_clock", "ps")  # rows written before the window was timed on worker 0's lines
    return saved


def report_only(out: Path) -> int:
    saved = load(out)
    rate = saved["rows"][0]["rate"] if saved["rows"] else "100mbit"
    model = re.search(r"--model (\S+)", " ".join(saved["provenance"][0]["argv"]))
    computes = {(c["workers"], c["ps_tasks"], c["method"]): c for c in saved["compute_alone"]}
    rows = [derive(r, computes.get((r["workers"], r["ps_tasks"], r["method"])), model[1] if model else "resnet18", rate)
            for r in saved["rows"]]
    write_outputs(out, rows, saved["compute_alone"], saved["provenance"], saved["failures"],
                  model[1] if model else "resnet18", rate, saved.get("retried"))
    print(f"scale_hosts: rewrote {out / 'results.csv'}, {out / 'results.md'} and {out / 'scale-hosts.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        return report_only(Path(args.out))
    if os.geteuid() != 0:
        print("scale_hosts: error: needs root (ip netns, tc)", file=sys.stderr)
        return 2
    rate_bits(args.rate)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    out, runs = Path(args.out), Path(args.runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    commands = [f"# {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join([sys.executable, *sys.argv])}"]
    grid = [(w, p, m) for m in args.methods for w in args.workers for p in args.ps_tasks]
    origins, rows, computes, failures = [provenance.record(runs)], [], [], []
    retried: list[str] = []  # attempts that failed before one that ran
    if args.add and (out / "results.json").exists():  # keep the earlier runs of every other grid point
        saved = load(out)
        made = {f"{m}-w{w}-ps{p}-" for w, p, m in grid}
        other = lambda r: f"{r['method']}-w{r['workers']}-ps{r['ps_tasks']}-" not in made  # noqa: E731
        origins = [*saved["provenance"], *origins]
        rows = [r for r in saved["rows"] if other(r)]
        computes = [r for r in saved["compute_alone"] if other(r)]
        failures = [f for f in saved["failures"] if not any(f.startswith(k) for k in made)]
        retried = [*saved.get("retried", []), *(f for f in saved["failures"] if any(f.startswith(k) for k in made))]
    made_by = len(origins) - 1
    try:
        for i, (workers, tasks, method) in enumerate(grid, 1):
            flags = flags_for(args, method, workers)
            compute = None
            for rate in ([args.rate] if args.no_compute_alone else [UNSHAPED, args.rate]):
                name = f"{method}-w{workers}-ps{tasks}-{rate}"
                spec = RunSpec(method, rate, workers, flags, runs / name)
                row = None
                for attempt in range(1, args.retries + 2):
                    print(f"scale_hosts: [{i}/{len(grid)}] {name}" + (f" (attempt {attempt})" if attempt > 1 else ""),
                          flush=True)
                    try:
                        row = run_point(spec, tasks, rate, args.run_timeout, commands)
                        break
                    except (SetupError, RunError, OSError, subprocess.CalledProcessError, json.JSONDecodeError,
                            KeyError) as e:
                        failed = f"{name}: {e}" + (f" (attempt {attempt})" if args.retries else "")
                        print(f"scale_hosts: FAILED: {failed}", flush=True)
                        if attempt == args.retries + 1:
                            failures.append(failed)
                        else:
                            retried.append(failed)
                if row is None:
                    continue
                row["attempts"] = attempt
                print(f"scale_hosts: {name}: {row['s_per_step']:.2f} s/step ({row['window']}), records "
                      f"{row['s_per_step_records']:.2f}, elapsed {row['elapsed_s']:.0f} s", flush=True)
                row["made_by"] = made_by
                if rate == UNSHAPED:
                    compute = row
                    computes.append(row)
                else:
                    rows.append(derive(row, compute, args.model, args.rate))
                write_outputs(out, rows, computes, origins, failures, args.model, args.rate, retried)
    except (KeyboardInterrupt, Interrupted) as e:
        failures.append(f"interrupted ({e or 'SIGINT'}) after {len(rows)} shaped runs")
        print(f"scale_hosts: {failures[-1]}", flush=True)
    finally:
        with open(runs / "commands.txt", "a") as f:
            f.write("\n".join(commands) + "\n\n")
        write_outputs(out, rows, computes, origins, failures, args.model, args.rate, retried)
    print((out / "results.md").read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
