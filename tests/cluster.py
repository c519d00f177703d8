"""Helpers for tests that start real PS and worker processes on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

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
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
       PORT_RANGE_ENV: f"{LAUNCHER_PORTS.start}-{LAUNCHER_PORTS.stop - 1}"}

# Small and quick: synthetic 28x28 images, 2 workers of 50 images a step.
SMALL = ["--model", "lenet5", "--dataset", "synthetic", "--worker-batch", "50", "--step-timeout", "60", "--connect-timeout", "60"]


def cluster_flags(workers: int) -> list[str]:
    ports = free_ports(workers + 1, TEST_PORTS)
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
        [sys.executable, script, *args], cwd=ROOT, env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=interruptible,
    )


def run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=ENV, text=True, timeout=timeout,
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
