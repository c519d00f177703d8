"""One run of the network benchmark: the PS and its workers started on emulated hosts (or on
127.0.0.1, unshaped) and supervised by the launcher's LocalCluster, then what the run measured.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.emulated_hosts import Topology, emulated_hosts, in_namespace, link_counters
from helpers import provenance
from runtime.launcher import INTERRUPTED, ROOT, Child, LocalCluster, terminal_worthy

PORT = 2222  # every host's own address, so one port serves them all
# The runs' TensorFlow logs hold warnings and errors only; the benchmark echoes its own choice of lines.
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
STALE = ("summary.json", "metrics.jsonl", "checkpoint.npz", "best.npz")  # a rerun starts afresh, never resumes


class RunError(Exception):
    """A run that did not finish: a process failed or the run took too long."""


@dataclass
class RunSpec:
    """One grid point and method."""
    method: str
    rate: str
    workers: int
    flags: list[str]  # training flags for the PS and workers (method variant included)
    run_dir: Path

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.rate, self.workers, self.method)


def run_children(spec: RunSpec, ps_host: str | list[str], worker_hosts: list[str],
                 namespaces: list[str] | None) -> list[Child]:
    """The PS and each worker of `spec`; each run inside its host's namespace if given (in the children's
    order: the PS tasks, then the workers). `ps_host` a list of several: PS task k (child `ps` for task 0,
    `psK` for the others) at ps_host[k], each started with --task_index K."""
    from runtime.cmdline import split  # imports TensorFlow: only when a run is built

    ps_hosts = [ps_host] if isinstance(ps_host, str) else list(ps_host)
    cluster = ["--ps_hosts", ",".join(ps_hosts), "--worker_hosts", ",".join(worker_hosts), "--out", str(spec.run_dir)]
    ps_flags, worker_flags = split(spec.flags)
    if len(ps_hosts) == 1:
        children = [Child("ps", [str(ROOT / "mp2_ps.py"), *cluster, *ps_flags])]
    else:
        children = [Child("ps" if k == 0 else f"ps{k}", [str(ROOT / "mp2_ps.py"), *cluster, "--task_index", str(k),
                                                           *ps_flags]) for k in range(len(ps_hosts))]
    children += [Child(f"w{i}", [str(ROOT / "mp2_worker.py"), *cluster, "--task_index", str(i), *worker_flags])
                 for i in range(spec.workers)]
    if namespaces:
        for child, namespace in zip(children, namespaces):
            child.prefix = in_namespace(namespace)
    return children


def progress_line(name: str, line: str) -> str | None:
    """What of a child's line the terminal gets: the PS's evaluations, its end and every error (not
    TensorFlow's start-up notices, whose "round-off errors" would otherwise count)."""
    if not terminal_worthy(line):
        return None
    if name == "ps" and (" test_acc " in line or "error" in line or "done:" in line):
        return f"  {line}"
    if "error" in line:
        return f"  [{name}] {line}"
    return None


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """A finished run's summary.json and its metrics.jsonl records."""
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return summary, records


def measured_row(spec: RunSpec, summary: dict, records: list[dict], link: dict[str, int] | None,
                 shaped: bool, elapsed: float, delay: str | None = None) -> dict:
    """What one run measured (the columns that need no other run)."""
    steps_per_epoch = summary["steps_per_epoch"]
    row = {
        "rate": spec.rate, "workers": spec.workers, "method": spec.method,
        "network": "namespaces" if shaped else "loopback (not shaped)", "delay": delay or "",
        "epochs": summary["epochs"], "steps": summary["steps"],
        # Validation figures are None in a run without the split; the report then reaches its target on test.
        "test_acc_at_best_val": summary.get("test_acc_at_best_val"), "best_val_epoch": summary.get("best_val_epoch"),
        "best_val_acc": summary.get("best_val_acc"), "final_test_acc": summary["final_test_acc"],
        "wall_s": round(summary["wall_seconds"], 3), "elapsed_s": round(elapsed, 3),
        "ps_step_ms": round(1000 * summary["wall_seconds"] / summary["steps"], 3),
        "worker_step_ms": round(1000 * sum(r["step_seconds"] for r in records) / (len(records) * steps_per_epoch), 3),
        "worker_comm_ms": round(1000 * sum(r["comm_seconds"] for r in records) / (len(records) * steps_per_epoch), 3),
        "bytes_up": summary["bytes_pushed_total"], "bytes_down": summary["bytes_pulled_total"],
    }
    for name in ("link_rx_bytes", "link_tx_bytes", "link_rx_packets", "link_tx_packets"):
        row[name] = link[name.removeprefix("link_")] if link else ""
    row["flags"] = provenance.portable(" ".join(spec.flags), spec.run_dir)  # results.csv is committed
    return row


def curve_rows(spec: RunSpec, records: list[dict]) -> list[dict]:
    """Per epoch: wall time, test and validation accuracy and cumulative accounted bytes (both directions)."""
    rows, total = [], 0
    for r in records:
        total += r["bytes_pushed"] + r["bytes_pulled"]
        rows.append({"rate": spec.rate, "workers": spec.workers, "method": spec.method, "epoch": r["epoch"],
                     "wall_s": round(r["wall_seconds"], 3), "test_acc": r["test_acc"], "val_acc": r.get("val_acc"),
                     "bytes_cum": total})
    return rows


def supervise(children: list[Child], log_dir: Path, timeout: float, echo=progress_line) -> None:
    """Run `children` to the end under the launcher's supervision, their lines in log_dir/NAME.log
    (started afresh) and their progress on the terminal (what `echo(name, line)` returns; it sees every
    line as it comes). RunError if one fails or time runs out; KeyboardInterrupt on Ctrl-C; every process
    is stopped on every way out."""
    for child in children:
        (log_dir / f"{child.name}.log").unlink(missing_ok=True)
    # No grace for the PS after a worker fails: the failed process's log says why, and the grid goes on.
    cluster = LocalCluster(children, log_dir=log_dir, ps_grace=0, echo=echo, env=CHILD_ENV, cwd=ROOT)
    try:
        cluster.start()
        code = cluster.wait(timeout)
    finally:
        cluster.stop(grace=0)  # after a start that failed part-way; once wait() returned, nothing is left to stop
    if code == INTERRUPTED:
        raise KeyboardInterrupt
    if code != 0:
        raise RunError(f"{cluster.failure}; see the logs in {log_dir}")


def run_one(spec: RunSpec, shaped: bool, delay: str | None, timeout: float, commands_log: list[str]) -> tuple[dict, list[dict]]:
    """One run on its own emulated hosts (or unshaped loopback): its measured row and curve."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    for stale in STALE:
        (spec.run_dir / stale).unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        if shaped:
            topology = Topology(f"mp2n{os.getpid()}x{time.monotonic_ns() % 10**6}", spec.workers, spec.rate, delay)
            setup: list[list[str]] = []
            stack.enter_context(emulated_hosts(topology, log=setup))
            commands_log += [shlex.join(c) for c in setup]
            hosts = [f"{topology.address(i)}:{PORT}" for i in range(spec.workers + 1)]
            namespaces = topology.hosts
        else:
            from runtime.cluster import free_ports

            hosts = [f"127.0.0.1:{p}" for p in free_ports(spec.workers + 1)]
            namespaces = None
        children = run_children(spec, hosts[0], hosts[1:], namespaces)
        commands_log += [shlex.join(child.command) for child in children]
        before = link_counters(namespaces[0]) if shaped else None
        started = time.monotonic()
        supervise(children, spec.run_dir, timeout)
        elapsed = time.monotonic() - started
        after = link_counters(namespaces[0]) if shaped else None
    link = {k: after[k] - before[k] for k in after} if shaped else None
    summary, records = read_run(spec.run_dir)
    return measured_row(spec, summary, records, link, shaped, elapsed, delay), curve_rows(spec, records)
