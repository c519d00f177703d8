"""Helpers for tests that start real PS and worker processes on 127.0.0.1."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from models import PREDICTED
from runtime.cluster import PORT_RANGE_ENV, free_ports


def _runner_ports() -> tuple[range, range]:
    """Parallel runners (pytest -n) each take their own ports below the kernel's ephemeral range (32768 up):
    the test's own clusters from the lower half, the launchers and benchmarks it starts (MP2_PORT_RANGE)
    from the upper, so that no two clusters alive at once can pick the same port before their servers
    bind it."""
    runner = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(runner[2:]) if runner[2:].isdigit() else 0
    base = 20000 + 1000 * (index % 12)
    return range(base, base + 500), range(base + 500, base + 1000)


TEST_PORTS, LAUNCHER_PORTS = _runner_ports()
LAUNCHER_SLICE = 50  # ports each started script may pick from (a launcher needs one per process)
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
       PORT_RANGE_ENV: f"{LAUNCHER_PORTS.start}-{LAUNCHER_PORTS.stop - 1}"}
_next = {"test": 0, "slice": 0}  # where the next hand-out starts in TEST_PORTS, and the next launcher slice


def take_ports(n: int) -> list[int]:
    """`n` free ports of this runner's TEST_PORTS, taken in turn: a port is handed out again only after
    the whole range has gone round, so clusters a test starts side by side never share one (picking at
    random, two picks before either cluster binds could collide)."""
    got, start = [], _next["test"]
    for k in range(len(TEST_PORTS)):
        port = TEST_PORTS[(start + k) % len(TEST_PORTS)]
        if free_ports(1, range(port, port + 1)):
            got.append(port)
        if len(got) == n:
            _next["test"] = (start + k + 1) % len(TEST_PORTS)
            return got
    raise RuntimeError(f"fewer than {n} free ports in {TEST_PORTS.start}-{TEST_PORTS.stop - 1}")


def launcher_env() -> dict[str, str]:
    """ENV with the next slice of LAUNCHER_PORTS as MP2_PORT_RANGE: scripts running at the same time
    (run_together, start) pick their clusters' ports from different slices."""
    slices = len(LAUNCHER_PORTS) // LAUNCHER_SLICE
    low = LAUNCHER_PORTS.start + LAUNCHER_SLICE * (_next["slice"] % slices)
    _next["slice"] += 1
    return {**ENV, PORT_RANGE_ENV: f"{low}-{low + LAUNCHER_SLICE - 1}"}

# Small and quick: synthetic 28x28 images, 2 workers of 50 images a step.
# --preset paper: the tests of the runtime were written against the MP² reference's defaults (lr 1e-3, mixup 1,
# the front layers pushed), whose figures they check; the measured preset has tests of its own (test_presets.py).
SMALL = ["--model", "lenet5", "--dataset", "synthetic", "--worker-batch", "50", "--step-timeout", "60", "--connect-timeout", "60",
         "--preset", "paper"]


def cluster_flags(workers: int) -> list[str]:
    ports = take_ports(workers + 1)
    return [
        "--ps_hosts", f"127.0.0.1:{ports[0]}",
        "--worker_hosts", ",".join(f"127.0.0.1:{p}" for p in ports[1:]),
    ]


def interruptible() -> None:
    """preexec_fn: Ctrl-C reaches the child even when the test runner was started in the background
    (a non-interactive shell's background job has SIGINT ignored, and the child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script, *args], cwd=ROOT, env=launcher_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=interruptible,
    )


def run(script: str, *args: str, timeout: float = 300, cwd: Path = ROOT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`script` (a path in the repository) run from `cwd`, with `env` added to the tests' environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env={**launcher_env(), **(env or {})}, text=True,
        timeout=timeout,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def run_together(*commands: tuple[str, ...], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Independent runs (each `(script, *args)`) at the same time: most of a small run is start-up."""
    procs = [start(*command) for command in commands]
    done = []
    for command, proc in zip(commands, procs):
        out, _ = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(list(command), proc.returncode, out))
    return done


def check_provenance(record: dict) -> None:
    """A record's provenance (provenance.py) is all there and names no absolute path in the repository."""
    assert {"git", "argv", "cwd", "python", "tensorflow", "numpy", "machine", "date"} <= set(record), record
    assert record["git"]["commit"] is None or len(record["git"]["commit"]) == 40, record["git"]
    assert str(ROOT) + "/" not in json.dumps(record) and str(ROOT) not in record["argv"], record["argv"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --- what a method sends, from the layout alone (the tests' expected bytes) ------------------------
def topk_entries(layout, ratio: float, group: str | None = None) -> int:
    """Top-k's entries per step: max(1, ⌊ratio · n⌋) of every tensor (of `group` only, if given)."""
    return sum(max(1, int(ratio * p.size)) for p in layout.params if group in (None, p.group))


def correction_entries(layout, ratio: float) -> int:
    """MP²'s correction entries per partial step: Top-k's of the predicted tensors."""
    return topk_entries(layout, ratio, PREDICTED)


def powersgd_sizes(layout, rank: int) -> tuple[int, int, int]:
    """(Σ n·r, Σ m·r, 1-D values): n a tensor's last dimension, m the product of the others, r ≤ rank."""
    ps = qs = dense = 0
    for p in layout.params:
        if len(p.shape) < 2:
            dense += p.size
            continue
        n, m = p.shape[-1], math.prod(p.shape[:-1])
        r = min(n, m, rank)
        ps, qs = ps + n * r, qs + m * r
    return ps, qs, dense
