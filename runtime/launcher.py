"""Run a PS and N workers as separate processes on this machine, with prefixed, merged output."""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# TensorFlow's C++ start-up notices, printed before its log settings apply: kept in the logs,
# left off the terminal where they would bury the run's own lines.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|I0000 \S+ +\d+ (port|cpu_feature_guard)\.cc"
    r"|To enable the following instructions)"
)


def _die_with_parent() -> None:
    # Linux: a child gets SIGTERM when the launcher dies, even by SIGKILL, so nothing is orphaned.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    pump: threading.Thread | None = field(default=None, repr=False)


class LocalCluster:
    """Start children, stream their lines with a prefix, and stop them all if one fails."""

    def __init__(self, children: list[Child], log_dir: Path | None = None) -> None:
        self.children = children
        self.log_dir = log_dir

    def start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "PYTHONUNBUFFERED": "1"}
        for child in self.children:
            child.proc = subprocess.Popen(
                [sys.executable, *child.argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1,
                preexec_fn=_die_with_parent,
            )
            child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.pump.start()

    def _pump(self, child: Child) -> None:
        log = open(self.log_dir / f"{child.name}.log", "w") if self.log_dir else None
        for line in child.proc.stdout:
            if not STARTUP_NOISE.match(line):
                sys.stdout.write(f"[{child.name}] {line}")
                sys.stdout.flush()
            if log:
                log.write(line)
                log.flush()
        if log:
            log.close()

    def wait(self) -> int:
        """0 when every child exits 0; else stop the rest and return the first failure's code."""
        try:
            while True:
                codes = [c.proc.poll() for c in self.children]
                failed = [(c, code) for c, code in zip(self.children, codes) if code not in (None, 0)]
                if failed:
                    child, code = failed[0]
                    print(f"[launcher] {child.name} exited with {code}; stopping the others", flush=True)
                    self.stop(grace=15)
                    return code
                if all(code == 0 for code in codes):
                    return 0
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("[launcher] interrupted; stopping every process", flush=True)
            self.stop(grace=5)
            return 130
        finally:
            for c in self.children:
                if c.pump:
                    c.pump.join(timeout=5)

    def stop(self, grace: float) -> None:
        """Give the others a moment to fail on their own (they report why), then terminate them."""
        end = time.monotonic() + grace
        while time.monotonic() < end and any(c.proc.poll() is None for c in self.children):
            time.sleep(0.2)
        for c in self.children:
            if c.proc.poll() is None:
                c.proc.terminate()
        for c in self.children:
            try:
                c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.proc.kill()
