"""Methods over emulated hosts: time to accuracy, bytes accounted and bytes on the PS's link.

    sudo .venv/bin/python benchmarks/network.py --methods baseline,localsgd,powersgd,mp2-online,dgc \\
        --rates 100mbit,1gbit --workers 4 --epochs 10 --method-flags 'dgc=--lr 0.05' -- --lr 0.003 --mixup 0

Every run gets its own emulated hosts: the PS and each worker in a network namespace of its own,
each joined to a switch (a bridge in one more namespace) by a veth pair, as a host's card is cabled
to a switch port. Both ends of every pair are shaped with tc tbf at --rates (and --delay), so each
host has its own budget in each direction, as a full-duplex card has; the PS's card carries every
worker's pushes in and every reply out. Bytes through the PS's card are read from its interface
counters before and after the run. Needs root (ip netns, tc); without it every run is unshaped on
127.0.0.1, the link counters are left empty (loopback carries the whole machine's traffic), and the
output and results say so.

For each (rate, workers) the target accuracy is the baseline's best there minus --margin (or
--target); a run's time to target is the PS's wall time (from the moment every worker joined) at
the end of the first epoch whose test accuracy reaches it. The PS evaluates once per epoch, so
times to target are epoch-granular.

Results accumulate in --out: results.csv (one row per run; a rerun of a grid point replaces its
row), curves.csv (one row per run and epoch), results.md, a PNG per worker count
(benchmarks/plot_network.py re-draws them from the CSVs). Every command run (the benchmark's, with
its provenance, then each namespace set-up step and process) is appended to --runs/commands.txt,
beside the runs' own directories. Flags after the benchmark's own (or after --) go to the PS and
every worker.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import argtypes
import provenance
from runtime.launcher import absolute_paths, die_with_parent

ROOT = Path(__file__).resolve().parent.parent

# Addresses inside the namespaces this benchmark creates, and nowhere else.
SUBNET = "10.213.0"
PS_ADDRESS = f"{SUBNET}.1"
PORT = 2222
HOST_IF = "eth0"  # the host's end of its cable, inside its own namespace
# A pure TCP ACK with timestamps on Ethernet: 14 (Ethernet) + 20 (IPv4) + 32 (TCP with options).
FRAME_OVERHEAD = 66
# Name in the grid -> flags to the PS and workers. Where a method has a knob, the variant carries the
# setting the frontier (benchmarks/frontier.py) measured best for its bytes; --method-flags overrides it.
METHOD_VARIANTS = {
    "baseline": ["--method", "baseline"],
    "localsgd": ["--method", "localsgd", "--sync-every", "16"],
    "powersgd": ["--method", "powersgd", "--rank", "2"],
    # No --predictor: the PS trains one during the run (its rounds are in the wall time); the classifier
    # pushed, the setting online MP²'s defaults were measured with.
    "mp2-online": ["--method", "mp2", "--push", "front+head"],
    "mp2-online-subset": ["--method", "mp2", "--push", "front+head", "--broadcast", "subset", "--sync-every", "16"],
    "mp2": ["--method", "mp2"],  # needs --predictor: one trained on a prior run
    "mp2-subset": ["--method", "mp2", "--broadcast", "subset"],
    "topk": ["--method", "topk"],
    "dgc": ["--method", "dgc"],
    "wnn": ["--method", "wnn"],
}
PREDICTOR_METHODS = ("mp2", "mp2-subset")
UNSHAPED = "unshaped"
PATH_FLAGS = ("--predictor", "--wnn", "--data-dir", "--snapshot-dir")


class BenchmarkError(Exception):
    """A grid that cannot run as asked, for a reason the user can fix."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind through every finally, so the namespaces go."""


# --- emulated hosts ------------------------------------------------------------------------------

def rate_bits(rate: str) -> int:
    """A tc rate ('100mbit', '1gbit', '500kbit', '2000000bit') in bits per second; ValueError if it is none."""
    units = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}
    for unit, scale in units.items():
        number = rate.lower().removesuffix(unit)
        if number != rate.lower():
            try:
                value = float(number)
            except ValueError:
                break
            if value > 0:
                return int(value * scale)
            break
    raise ValueError(f"rate {rate!r} is not a tc rate such as 100mbit or 1gbit (or {UNSHAPED!r})")


def shaping_commands(namespace: str, device: str, rate: str, delay: str | None) -> list[list[str]]:
    """tc commands shaping the egress of `device` in `namespace`: tbf at `rate`, netem `delay` in front."""
    if rate == UNSHAPED and not delay:
        return []
    tc = ["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device]
    commands, parent = [], ["root"]
    if delay:
        commands.append([*tc, "root", "handle", "1:", "netem", "delay", delay])
        parent = ["parent", "1:"]
    if rate != UNSHAPED:
        # A burst of at least 1 ms of traffic, so a 64 KB segment-offloaded packet always fits.
        burst = max(64 * 1024, rate_bits(rate) // 8 // 1000)
        commands.append([*tc, *parent, "handle", "2:", "tbf", "rate", rate, "burst", str(burst), "latency", "100ms"])
    return commands


@dataclass
class Topology:
    """The namespaces and cables of one run: a switch, the PS and `workers` hosts."""
    prefix: str
    workers: int
    rate: str
    delay: str | None = None

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    @property
    def hosts(self) -> list[str]:
        return [f"{self.prefix}ps", *(f"{self.prefix}w{i}" for i in range(self.workers))]

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *self.hosts]

    def address(self, host_index: int) -> str:
        """Host 0 is the PS (.1); worker i is .(10 + i)."""
        return PS_ADDRESS if host_index == 0 else f"{SUBNET}.{9 + host_index}"

    def setup_steps(self) -> Iterator[tuple[str | None, list[list[str]]]]:
        """(namespace this step creates or None, its commands), in order; cleanup deletes those created."""
        yield self.switch, [["ip", "netns", "add", self.switch]]
        yield None, [["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"],
                     ["ip", "-n", self.switch, "link", "set", "br0", "up"]]
        for index, host in enumerate(self.hosts):
            port = f"p{index}"  # the switch's end of this host's cable
            yield host, [["ip", "netns", "add", host]]
            yield None, [
                ["ip", "link", "add", HOST_IF, "netns", host, "type", "veth", "peer", "name", port, "netns", self.switch],
                ["ip", "-n", self.switch, "link", "set", port, "master", "br0"],
                ["ip", "-n", self.switch, "link", "set", port, "up"],
                ["ip", "-n", host, "addr", "add", f"{self.address(index)}/24", "dev", HOST_IF],
                ["ip", "-n", host, "link", "set", "lo", "up"],
                ["ip", "-n", host, "link", "set", HOST_IF, "up"],
                # host -> switch is what the host sends; switch -> host what it receives.
                *shaping_commands(host, HOST_IF, self.rate, self.delay),
                *shaping_commands(self.switch, port, self.rate, self.delay),
            ]


Runner = Callable[[list[str]], None]


def run_checked(command: list[str]) -> None:
    """Run one set-up command; BenchmarkError with its own message if it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()}")


def delete_namespaces(names: Sequence[str], runner: Runner) -> list[str]:
    """Delete every namespace named, the last created first; the errors, if any (never raises)."""
    errors = []
    for name in reversed(names):
        try:
            runner(["ip", "netns", "del", name])
        except Exception as e:  # noqa: BLE001 - cleanup goes on whatever one deletion says
            errors.append(f"{name}: {e}")
    return errors


@contextlib.contextmanager
def emulated_hosts(topology: Topology, runner: Runner = run_checked, log: list | None = None) -> Iterator[Topology]:
    """The topology built for the duration of the block; every namespace created is deleted on
    every way out (a failing set-up command, an exception or a signal in the block)."""
    created: list[str] = []
    try:
        for namespace, commands in topology.setup_steps():
            if namespace:
                created.append(namespace)  # before the command: a half-made namespace is deleted too
            for command in commands:
                if log is not None:
                    log.append(command)
                runner(command)
        yield topology
    finally:
        errors = delete_namespaces(created, runner)
        if errors:
            print(f"benchmark: warning: could not delete namespaces: {'; '.join(errors)}", file=sys.stderr, flush=True)


def link_counters(namespace: str, device: str = HOST_IF) -> dict[str, int]:
    """The interface counters of `device` in `namespace`: rx/tx bytes and packets."""
    names = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
    done = subprocess.run(["ip", "netns", "exec", namespace, "cat",
                           *(f"/sys/class/net/{device}/statistics/{n}" for n in names)],
                          capture_output=True, text=True, check=True)
    return dict(zip(names, (int(v) for v in done.stdout.split())))


# --- one run -------------------------------------------------------------------------------------

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


@dataclass
class Processes:
    """The PS and workers of one run; the PS's lines that matter are echoed as progress."""
    commands: list[tuple[str, list[str]]]
    log_dir: Path
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    pumps: list[threading.Thread] = field(default_factory=list)

    def start(self, echo: Callable[[str], None]) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        for name, command in self.commands:
            log = open(self.log_dir / f"{name}.log", "w")
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, bufsize=1, preexec_fn=die_with_parent)
            pump = threading.Thread(target=self._pump, args=(name, proc, log, echo), daemon=True)
            pump.start()
            self.pumps.append(pump)
            self.procs.append((name, proc))

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen, log, echo: Callable[[str], None]) -> None:
        with log:
            for line in proc.stdout:
                log.write(line)
                if name == "ps" and (" test_acc " in line or "error" in line or "done:" in line):
                    echo(line.rstrip())
                elif "error" in line:
                    echo(f"[{name}] {line.rstrip()}")

    def wait(self, timeout: float) -> None:
        """Until every process exits 0; BenchmarkError naming the first to fail (the rest are stopped)."""
        deadline = time.monotonic() + timeout
        while True:
            codes = [(name, proc.poll()) for name, proc in self.procs]
            failed = [(name, code) for name, code in codes if code not in (None, 0)]
            if failed:
                name, code = failed[0]
                raise BenchmarkError(f"{name} exited with {code}; see {self.log_dir / (name + '.log')}")
            if all(code == 0 for _, code in codes):
                return
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the run took over {timeout:.0f} s; see the logs in {self.log_dir}")
            time.sleep(0.5)

    def stop(self, grace: float = 5.0) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pump in self.pumps:  # the last lines reach the logs before anyone reads them
            pump.join(timeout=5)


def process_commands(spec: RunSpec, ps_host: str, worker_hosts: list[str],
                     namespaces: list[str] | None) -> list[tuple[str, list[str]]]:
    """(name, argv) of the PS and each worker; each run inside its host's namespace if given."""
    from runtime.flags import split_ps_only  # imports TensorFlow: only when a run is built

    cluster = ["--ps_hosts", ps_host, "--worker_hosts", ",".join(worker_hosts), "--out", str(spec.run_dir)]
    commands = [("ps", [sys.executable, str(ROOT / "mp2_ps.py"), *cluster, *spec.flags])]
    worker_flags = split_ps_only(spec.flags)
    commands += [(f"w{i}", [sys.executable, str(ROOT / "mp2_worker.py"), *cluster, "--task_index", str(i),
                            *worker_flags]) for i in range(spec.workers)]
    if namespaces:
        commands = [(name, ["ip", "netns", "exec", ns, *argv]) for (name, argv), ns in zip(commands, namespaces)]
    return commands


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
        "best_test_acc": summary["best_test_acc"], "final_test_acc": summary["final_test_acc"],
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
    """Per epoch: wall time, test accuracy and cumulative accounted bytes (both directions)."""
    rows, total = [], 0
    for r in records:
        total += r["bytes_pushed"] + r["bytes_pulled"]
        rows.append({"rate": spec.rate, "workers": spec.workers, "method": spec.method, "epoch": r["epoch"],
                     "wall_s": round(r["wall_seconds"], 3), "test_acc": r["test_acc"], "bytes_cum": total})
    return rows


# --- derived figures -----------------------------------------------------------------------------

def time_to_target(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The wall time of the first (wall, accuracy) point at or above `target`; None if none is."""
    for wall, accuracy in sorted(curve):
        if accuracy >= target:
            return wall
    return None


def targets(rows: list[dict], margin: float, fixed: float | None) -> dict[tuple[str, int], float]:
    """The target accuracy of every (rate, workers): `fixed`, else the baseline's best there minus `margin`."""
    points = {(r["rate"], int(r["workers"])) for r in rows}
    if fixed is not None:
        return {p: fixed for p in points}
    return {(r["rate"], int(r["workers"])): round(float(r["best_test_acc"]) - margin, 6)
            for r in rows if r["method"] == "baseline"}


def _ratio(value, reference) -> float | str:
    return round(float(value) / float(reference), 4) if value not in ("", None) and reference not in ("", None, 0) else ""


def derive(rows: list[dict], curves: list[dict], margin: float, fixed: float | None) -> list[dict]:
    """`rows` with target, time to target and the ratios to the baseline at the same grid point."""
    goal = targets(rows, margin, fixed)
    baseline = {(r["rate"], int(r["workers"])): r for r in rows if r["method"] == "baseline"}
    reached = {}
    for r in rows:
        point = (r["rate"], int(r["workers"]))
        curve = [(float(c["wall_s"]), float(c["test_acc"])) for c in curves
                 if (c["rate"], int(c["workers"]), c["method"]) == (r["rate"], int(r["workers"]), r["method"])]
        reached[(*point, r["method"])] = time_to_target(curve, goal[point]) if point in goal else None
    out = []
    for r in rows:
        point = (r["rate"], int(r["workers"]))
        base = baseline.get(point)
        t = reached[(*point, r["method"])]
        t_base = reached.get((*point, "baseline"))
        total = int(r["bytes_up"]) + int(r["bytes_down"])
        row = {**r, "target_acc": goal.get(point, ""), "time_to_target_s": "" if t is None else t,
               "time_vs_baseline": _ratio(t, t_base) if t is not None and t_base else "",
               "bytes_vs_baseline": _ratio(total, int(base["bytes_up"]) + int(base["bytes_down"])) if base else "",
               "link_rx_vs_up": _ratio(r["link_rx_bytes"], r["bytes_up"]),
               "link_tx_vs_down": _ratio(r["link_tx_bytes"], r["bytes_down"])}
        # Link bytes less one frame's headers per packet: the TCP payload (ACKs carry none). What is
        # left above the accounted bytes is RPC framing and the handshake, per worker and step.
        worker_steps = int(r["steps"]) * int(r["workers"])
        for direction, accounted in (("rx", "bytes_up"), ("tx", "bytes_down")):
            name = accounted.removeprefix("bytes_")
            if r[f"link_{direction}_bytes"] not in ("", None):
                payload = int(r[f"link_{direction}_bytes"]) - FRAME_OVERHEAD * int(r[f"link_{direction}_packets"])
                row[f"payload_{direction}_vs_{name}"] = _ratio(payload, r[accounted])
                row[f"unaccounted_{direction}_per_worker_step"] = round((payload - int(r[accounted])) / worker_steps, 1)
            else:
                row[f"payload_{direction}_vs_{name}"] = row[f"unaccounted_{direction}_per_worker_step"] = ""
        out.append(row)
    return out


# --- files ---------------------------------------------------------------------------------------

RESULT_COLUMNS = [
    "rate", "workers", "method", "network", "delay", "epochs", "steps", "target_acc", "time_to_target_s", "time_vs_baseline",
    "best_test_acc", "final_test_acc", "wall_s", "elapsed_s", "ps_step_ms", "worker_step_ms", "worker_comm_ms",
    "bytes_up", "bytes_down", "bytes_vs_baseline", "link_rx_bytes", "link_tx_bytes", "link_rx_packets",
    "link_tx_packets", "link_rx_vs_up", "link_tx_vs_down", "payload_rx_vs_up", "payload_tx_vs_down",
    "unaccounted_rx_per_worker_step", "unaccounted_tx_per_worker_step", "flags",
]
CURVE_COLUMNS = ["rate", "workers", "method", "epoch", "wall_s", "test_acc", "bytes_cum"]


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """`rows` as CSV with `columns` (extra keys dropped), written whole then renamed into place."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def merge(old: list[dict], new: list[dict], key: Callable[[dict], tuple]) -> list[dict]:
    """`old` with every row whose key a `new` row has replaced by the new ones (in grid order)."""
    replaced = {key(r) for r in new}
    return [r for r in old if key(r) not in replaced] + new


def _key(row: dict) -> tuple[str, int, str]:
    return (row["rate"], int(row["workers"]), row["method"])


def _mb(value) -> str:
    return "" if value in ("", None) else f"{int(value) / 1e6:.1f}"


def _pct(value) -> str:
    return "" if value in ("", None) else f"{100 * float(value):.1f} %"


def _sort_key(row: dict) -> tuple:
    rate = row["rate"]
    order = list(METHOD_VARIANTS)
    return (int(row["workers"]), rate == UNSHAPED, rate_bits(rate) if rate != UNSHAPED else 0,
            order.index(row["method"]) if row["method"] in order else len(order), row["method"])


def markdown_table(rows: list[dict]) -> str:
    """The derived rows as a markdown table, grid point by grid point."""
    head = ["rate", "workers", "method", "target acc", "time to target (s)", "vs baseline", "best acc", "final acc",
            "wall (s)", "PS s/step (ms)", "up (MB)", "down (MB)", "bytes vs baseline", "PS link in (MB)",
            "PS link out (MB)", "TCP payload in / up", "TCP payload out / down",
            "unaccounted in / out (B per worker-step)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=_sort_key):
        t = r["time_to_target_s"]
        cells = [r["rate"], str(r["workers"]), r["method"], f"{float(r['target_acc']):.4f}" if r["target_acc"] != "" else "",
                 f"{float(t):.1f}" if t != "" else "not reached", _pct(r["time_vs_baseline"]),
                 f"{float(r['best_test_acc']):.4f}", f"{float(r['final_test_acc']):.4f}", f"{float(r['wall_s']):.1f}",
                 f"{float(r['ps_step_ms']):.1f}", _mb(r["bytes_up"]), _mb(r["bytes_down"]),
                 _pct(r["bytes_vs_baseline"]), _mb(r["link_rx_bytes"]), _mb(r["link_tx_bytes"]),
                 f"{float(r['payload_rx_vs_up']):.3f}" if r["payload_rx_vs_up"] != "" else "",
                 f"{float(r['payload_tx_vs_down']):.3f}" if r["payload_tx_vs_down"] != "" else "",
                 f"{float(r['unaccounted_rx_per_worker_step']):.0f} / {float(r['unaccounted_tx_per_worker_step']):.0f}"
                 if r.get("unaccounted_rx_per_worker_step", "") != "" else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


EXPLANATION = """\
How to read it. *up* and *down* are the bytes the runtime accounts: the tensors each worker pushes
and each reply it receives (with the reply's 16-byte control word), summed over workers and steps;
mp2-subset's workers read the predictor file themselves (the handshake compares its SHA-256), so no
predictor weights cross the network. *PS link in/out* are the
PS's interface counters (received/transmitted, read before and after the run). They count every
packet on the PS's cable, each with 66 bytes of Ethernet, IPv4 and TCP headers: the data, the TCP
ACKs of the other direction (a pure ACK is those 66 bytes alone, so a direction that carries
little, such as MP²'s or Top-k's pushes, is inflated most), and TCP payload the runtime does not
account: HTTP/2 and gRPC framing, the protobuf envelope of every tensor, TensorFlow's own RPCs (a
RunGraph call on the PS for each of a worker's session runs, a RecvTensor request for every tensor
fetched) and the handshake (the configuration check, and the starting model sent to every worker
before the first step). A veth packet may carry up to 64 KB behind one header (segmentation
offload), and how many are split depends on the shaping, so the raw counters move with the rate
for the same traffic; subtracting 66 bytes per counted packet gives the TCP payload, which does
not: *TCP payload in / up* and *out / down* compare it with the accounted bytes, and *unaccounted*
is what remains of it, per worker and step. A physical card with a 1500-byte MTU would add about
4.6 % of headers on top of the payload (66 bytes per 1448).
Times to target come from the PS's per-epoch evaluation (the only one there is), so they are
multiples of an epoch's time; wall time starts when every worker has joined. PS s/step is the PS's
wall time over its steps (epoch-end evaluation included).
"""


def notes_for(rows: list[dict]) -> list[str]:
    """What the table's readers must know about how its rows were run."""
    notes = []
    delays = sorted({r.get("delay") or "" for r in rows if r["network"] == "namespaces"} - {""})
    if any(r["network"] == "namespaces" for r in rows):
        notes.append("Emulated hosts: the PS and each worker in a network namespace of its own, cabled by veth pairs "
                     "to a bridge; both ends of every cable shaped with tc tbf at the rate (a full-duplex card per "
                     "host)" + (f"; netem delay {', '.join(delays)} where the flags say so" if delays else "") + ".")
    if any(r["network"] != "namespaces" for r in rows):
        notes.append("**Not shaped**: the rows marked loopback ran over 127.0.0.1 without namespaces (no root, or "
                     "--unshaped-loopback); their rate names the grid point only, and link counters are not measured.")
    return notes


def write_results(out: Path, new_rows: list[dict], new_curves: list[dict], margin: float,
                  fixed: float | None) -> list[dict]:
    """Merge this grid's rows and curves into out/*.csv, then rewrite results.md and the plots."""
    rows = merge(read_csv(out / "results.csv"), new_rows, _key)
    curves = merge(read_csv(out / "curves.csv"), new_curves, _key)
    derived = sorted(derive(rows, curves, margin, fixed), key=_sort_key)
    write_csv(out / "results.csv", derived, RESULT_COLUMNS)
    write_csv(out / "curves.csv", curves, CURVE_COLUMNS)
    target = f"target: {fixed}" if fixed is not None else f"target: the baseline's best at each grid point minus {margin}"
    text = "# Network benchmark\n\n" + "".join(f"{n}\n\n" for n in notes_for(derived)) + f"{target}.\n\n"
    text += markdown_table(derived) + "\n" + EXPLANATION
    (out / "results.md").write_text(text)
    from benchmarks.plot_network import plot  # matplotlib only once there is something to draw

    plot(out / "curves.csv", out, targets(rows, margin, fixed))
    return derived


# --- the grid ------------------------------------------------------------------------------------

def ps_lists_subset_broadcast() -> bool:
    """Whether this tree's mp2_ps.py offers --broadcast subset (its --help says)."""
    done = subprocess.run([sys.executable, str(ROOT / "mp2_ps.py"), "--help"], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return "--broadcast" in done.stdout and "subset" in done.stdout


def parse_method_flags(values: list[str]) -> dict[str, list[str]]:
    """--method-flags 'dgc=--lr 0.05' (repeatable) as {method: flags}; ValueError on a bad one."""
    out: dict[str, list[str]] = {}
    for value in values:
        method, eq, flags = value.partition("=")
        if not eq or method not in METHOD_VARIANTS:
            raise ValueError(f"--method-flags {value!r}: write METHOD=FLAGS with METHOD one of {', '.join(METHOD_VARIANTS)}")
        out.setdefault(method, []).extend(flags.split())
    return out


def run_one(spec: RunSpec, shaped: bool, delay: str | None, timeout: float, commands_log: list[str],
            echo: Callable[[str], None]) -> tuple[dict, list[dict]]:
    """One run on its own emulated hosts (or unshaped loopback): its measured row and curve."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "metrics.jsonl", "checkpoint.npz", "best.npz"):
        (spec.run_dir / stale).unlink(missing_ok=True)  # a rerun starts afresh, never resumes
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
        processes = Processes(process_commands(spec, hosts[0], hosts[1:], namespaces), spec.run_dir)
        commands_log += [shlex.join(argv) for _, argv in processes.commands]
        before = link_counters(namespaces[0]) if shaped else None
        started = time.monotonic()
        try:
            processes.start(lambda line: echo(f"  {line}"))
            processes.wait(timeout)
        finally:
            processes.stop()
        elapsed = time.monotonic() - started
        after = link_counters(namespaces[0]) if shaped else None
    link = {k: after[k] - before[k] for k in after} if shaped else None
    summary, records = read_run(spec.run_dir)
    return measured_row(spec, summary, records, link, shaped, elapsed, delay), curve_rows(spec, records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, of {', '.join(METHOD_VARIANTS)} (default: baseline, localsgd, powersgd, "
                        "mp2-online, mp2 and mp2-subset when --predictor is given, topk, dgc, wnn when --wnn is given)")
    p.add_argument("--rates", default=f"100mbit,1gbit,{UNSHAPED}", help=f"comma-separated tc rates, or {UNSHAPED}")
    p.add_argument("--workers", default="4,8", help="comma-separated worker counts")
    p.add_argument("--epochs", type=argtypes.positive_int, default=2)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--predictor", help="MP² predictor checkpoint (needed by mp2 and mp2-subset)")
    p.add_argument("--wnn", help="WNN nowcaster checkpoint (needed by wnn)")
    p.add_argument("--delay", help="one-way delay added at each cable end with netem, e.g. 1ms (needs sch_netem)")
    p.add_argument("--margin", type=argtypes.fraction, default=0.01,
                   help="the target is the baseline's best accuracy at the grid point minus this")
    p.add_argument("--target", type=argtypes.fraction, default=None, help="a fixed target accuracy instead")
    p.add_argument("--method-flags", action="append", default=[], metavar="METHOD=FLAGS",
                   help="flags for one method only, after the shared ones, e.g. 'dgc=--lr 0.05' (repeatable)")
    p.add_argument("--out", default="results/network", help="where results.csv, curves.csv, results.md and PNGs go")
    p.add_argument("--runs", default="runs/network", help="where each run's directory and logs go")
    p.add_argument("--run-timeout", type=argtypes.positive_float, default=3600.0, help="seconds one run may take")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite results.csv, results.md and the plots in --out from its CSVs")
    p.add_argument("--unshaped-loopback", action="store_true",
                   help="run on 127.0.0.1 without namespaces even as root (what happens anyway without root)")
    args, passthrough = p.parse_known_args(argv)
    passthrough = [a for a in passthrough if a != "--"]

    def fail(message: str) -> int:
        print(f"network: error: {message}", file=sys.stderr)
        return 2

    out = Path(args.out)
    if args.report_only:
        if not (out / "results.csv").exists():
            return fail(f"--report-only: no results.csv in {out}; run the grid first")
        write_results(out, [], [], args.margin, args.target)
        print(f"network: rewrote {out / 'results.csv'}, {out / 'results.md'} and the plots", flush=True)
        return 0

    try:
        rates = [r.strip() for r in args.rates.split(",") if r.strip()]
        for rate in rates:
            if rate != UNSHAPED:
                rate_bits(rate)
        workers = [argtypes.positive_int(w.strip()) for w in args.workers.split(",") if w.strip()]
        method_flags = parse_method_flags(args.method_flags)
    except (ValueError, argparse.ArgumentTypeError) as e:
        return fail(str(e))
    if not rates or not workers:
        return fail("--rates and --workers need at least one value each")
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        subset = bool(args.predictor) and ps_lists_subset_broadcast()
        methods = ["baseline", "localsgd", "powersgd", "mp2-online", *(["mp2"] if args.predictor else []),
                   *(["mp2-subset"] if subset else []), "topk", "dgc", *(["wnn"] if args.wnn else [])]
    unknown = [m for m in methods if m not in METHOD_VARIANTS]
    if unknown or not methods:
        return fail(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHOD_VARIANTS)}")
    if any(m in PREDICTOR_METHODS for m in methods) and not args.predictor:
        return fail("mp2 and mp2-subset need --predictor PATH (mp2_pipeline.py or mp2_train_stage.py makes one); "
                    "mp2-online trains its own")
    if "wnn" in methods and not args.wnn:
        return fail("wnn needs --wnn PATH (mp2_train_wnn.py makes one)")
    for flag, path in (("--predictor", args.predictor), ("--wnn", args.wnn)):
        if path and not Path(path).exists():
            return fail(f"{flag} {path}: no such file")
    if "mp2-subset" in methods and not ps_lists_subset_broadcast():
        return fail("--methods mp2-subset: this tree's mp2_ps.py has no --broadcast subset; leave mp2-subset out")
    # Baseline first at every grid point: it sets the target.
    methods.sort(key=lambda m: m != "baseline")

    is_root = os.geteuid() == 0
    shaped = is_root and not args.unshaped_loopback
    if not shaped:
        why = "--unshaped-loopback" if is_root else "not root (ip netns and tc need root)"
        print(f"network: running UNSHAPED on 127.0.0.1 ({why}); link counters will be empty", flush=True)
        if args.delay:
            return fail("--delay needs the namespaces (root)")
    runs = Path(args.runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(f"cannot create {e.filename} ({e.strerror}); choose another --out/--runs")

    base_flags = ["--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs),
                  *absolute_paths(passthrough, PATH_FLAGS)]
    grid = []
    for n in workers:
        for rate in rates:
            for method in methods:
                flags = [*base_flags, *METHOD_VARIANTS[method]]
                if method in PREDICTOR_METHODS:
                    flags += ["--predictor", os.path.abspath(args.predictor)]
                if method == "wnn":
                    flags += ["--wnn", os.path.abspath(args.wnn)]
                flags += method_flags.get(method, [])
                grid.append(RunSpec(method, rate, n, flags, runs.resolve() / f"{rate}-w{n}-{method}"))

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    commands_log = [f"# {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join([sys.executable, *sys.argv])}",
                    f"# provenance: {json.dumps(provenance.record(runs))}"]
    rows, curves, failures = [], [], []
    echo = lambda line: print(line, flush=True)  # noqa: E731
    try:
        for i, spec in enumerate(grid, 1):
            echo(f"network: [{i}/{len(grid)}] {spec.method} at {spec.rate}, {spec.workers} workers, "
                 f"{args.epochs} epochs -> {spec.run_dir}")
            try:
                row, curve = run_one(spec, shaped, args.delay, args.run_timeout, commands_log, echo)
            except (BenchmarkError, OSError, subprocess.CalledProcessError, json.JSONDecodeError, KeyError) as e:
                failures.append(f"{spec.method} at {spec.rate}, {spec.workers} workers: {e}")
                echo(f"network: FAILED: {failures[-1]}")
                continue
            rows.append(row)
            curves += curve
            echo(f"network: {spec.method} at {spec.rate}: best {row['best_test_acc']:.4f} in {row['wall_s']:.1f} s, "
                 f"up {row['bytes_up'] / 1e6:.1f} MB, down {row['bytes_down'] / 1e6:.1f} MB"
                 + (f"; PS link in {row['link_rx_bytes'] / 1e6:.1f} MB, out {row['link_tx_bytes'] / 1e6:.1f} MB"
                    if row["link_rx_bytes"] != "" else ""))
            write_results(out, rows, curves, args.margin, args.target)  # after every run: nothing lost
    except (KeyboardInterrupt, Interrupted) as e:
        name = str(e) if isinstance(e, Interrupted) else "SIGINT"
        echo(f"network: interrupted ({name}); every process stopped{', every namespace deleted' if shaped else ''}; "
             f"finished runs are in {out}")
        return 128 + signal.Signals[name].value  # as the shell reports a death by that signal
    finally:
        with open(runs / "commands.txt", "a") as f:
            f.write("\n".join(commands_log) + "\n\n")
    if rows:
        echo(f"network: wrote {out / 'results.csv'}, {out / 'curves.csv'}, {out / 'results.md'} and the plots")
        echo((out / "results.md").read_text())
    for failure in failures:
        print(f"network: failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
