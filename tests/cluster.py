"""Helpers for tests that start real PS and worker processes on 127.0.0.1."""
from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

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


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Any]) -> Any:
    """What `build(directory)` returns (JSON data: paths as str), built once in the test session.

    For a module fixture that starts processes: on parallel runners (pytest -n) the tests using it may land on
    both, and each runner would build it. Here the first runner to ask builds it, in a directory of the
    session's that both runners see; the other waits for it and reads the same value. `name` is unique in
    the suite."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's base directory, above each runner's own
    directory, saved = root / f"once-{name}", root / f"once-{name}.json"
    with open(root / f"once-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, whatever build does
        if not saved.exists():
            shutil.rmtree(directory, ignore_errors=True)  # left by a build that failed
            directory.mkdir()
            saved.write_text(json.dumps(build(directory)))
        return json.loads(saved.read_text())


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


def run_in_one(script: str, *cases: list[str], timeout: float = 300, cwd: Path = ROOT, env: dict[str, str] | None = None,
               merge: bool = True) -> list[subprocess.CompletedProcess]:
    """`script` (a path in the repository, or "-m MODULE") run once per case (its arguments), all in one Python
    process (tests/in_one.py): for cases that stop before any cluster forms, whose TensorFlow start-up would
    otherwise be most of their cost. One CompletedProcess per case: its exit code, and in stdout what it printed
    (stdout and stderr, as `run` gives them; with merge=False stdout and stderr apart) — TensorFlow's own C++
    log lines are not among them."""
    target = script if script.startswith("-m ") else str(ROOT / script)
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "in_one.py"), target, json.dumps([list(c) for c in cases])],
                          cwd=cwd, env={**launcher_env(), **(env or {})}, text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    marked = [line for line in done.stdout.splitlines() if line.startswith("in_one: ")]
    assert done.returncode == 0 and len(marked) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    return [subprocess.CompletedProcess([script, *case], r["returncode"], *((r["output"],) if merge else (r["stdout"], r["stderr"])))
            for case, r in zip(cases, json.loads(marked[0][len("in_one: "):]))]


def run_together(*commands: tuple[str, ...], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Independent runs (each `(script, *args)`) at the same time: most of a small run is start-up."""
    procs = [start(*command) for command in commands]
    done = []
    for command, proc in zip(commands, procs):
        out, _ = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(list(command), proc.returncode, out))
    return done


def check_resumed(whole: Path, split: Path, saved: dict, again: subprocess.CompletedProcess) -> None:
    """`split`, run 1 epoch (its summary then: `saved`) and resumed to 2 (`again`), ends as `whole`, the same
    run's 2 epochs in one go: the same model bit for bit, the same curves, the validation history kept and
    chosen from alike, epoch 1 kept rather than run again."""
    import numpy as np

    assert again.returncode == 0, again.stdout[-4000:]
    assert "resuming after epoch 1" in again.stdout and "warning" not in again.stdout, again.stdout[-4000:]
    summary, uninterrupted = (json.loads((d / "summary.json").read_text()) for d in (split, whole))
    assert summary["resumed_from_epoch"] == 1
    assert summary["test_acc_by_epoch"][0] == saved["test_acc_by_epoch"][0]  # epoch 1 kept, not rerun
    assert [r["epoch"] for r in read_jsonl(split / "metrics.jsonl")] == [1, 2]
    np.testing.assert_array_equal(np.load(whole / "checkpoint.npz")["model"], np.load(split / "checkpoint.npz")["model"],
                                  err_msg=str(split))
    assert summary["test_acc_by_epoch"] == uninterrupted["test_acc_by_epoch"]
    for key in ("val_acc_by_epoch", "best_val_epoch", "test_acc_at_best_val"):  # the history kept, chosen alike
        assert summary[key] == uninterrupted[key], key
    assert len(summary["val_acc_by_epoch"]) == 2 and None not in summary["val_acc_by_epoch"]
    assert [r["epoch"] for r in read_jsonl(split / "worker-0.jsonl")] == [1, 2]


def check_provenance(record: dict) -> None:
    """A record's provenance (helpers/provenance.py) is all there and names no absolute path in the repository."""
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
