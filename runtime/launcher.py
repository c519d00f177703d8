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
from typing import IO, Callable

from runtime.exits import STALLED

ROOT = Path(__file__).resolve().parent.parent
# TensorFlow's C++ start-up notices and its runtime log lines below errors (absl's "W1202 16:21:22.5 ...
# file.cc:12] ..." or the older "2026-12-02 16:21:22.5: W tensorflow/..."): kept in each process's log,
# left off the terminal where they would bury the run's own lines.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|I0000 \S+ +\d+ (port|cpu_feature_guard)\.cc"
    r"|To enable the following instructions)"
)
TF_LOG_LINE = re.compile(r"^([IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] )")
# Children log TensorFlow's warnings and errors (level 1): the next unknown failure can then be read
# from the files. A TF_CPP_MIN_LOG_LEVEL of the caller's own wins.
TF_LOG_LEVEL = "1"


def terminal_worthy(line: str) -> bool:
    """Whether a child's output line goes to the terminal too (every line goes to its log)."""
    return not (STARTUP_NOISE.match(line) or TF_LOG_LINE.match(line))


def import_tensorflow_quietly() -> None:
    """Load TensorFlow with this process's stderr muted: its C++ start-up notices go straight to fd 2,
    before any log setting applies, and would bury a launcher's one-line errors. A failed import is
    shown as usual."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def die_with_parent() -> None:
    # Linux: a child gets SIGTERM when the launcher dies, even by SIGKILL, so nothing is orphaned.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def prefixed(name: str, line: str) -> str | None:
    """The launcher's terminal: every worthy line, after its child's name."""
    return f"[{name}] {line}" if terminal_worthy(line) else None


# (child name, output line as read) -> the text the terminal gets, or None to keep the line in the log only.
TerminalFilter = Callable[[str, str], str | None]


class LaunchError(Exception):
    """A run that cannot start or go on, for a reason the user can fix (e.g. an unwritable --out)."""


def make_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` made absolute and created (with its parents); LaunchError in one line if it cannot be."""
    path = Path(os.path.abspath(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LaunchError(f"cannot create {flag} {path} ({e.strerror or e}); choose a directory you can write") from None
    return path


def absolute_paths(argv: list[str], flags: tuple[str, ...], maybe_paths: tuple[str, ...] = ("--dataset", "--model")) -> list[str]:
    """`argv` with the values of `flags` (--flag VALUE or --flag=VALUE) made absolute against this cwd, and those
    of `maybe_paths` when they name a file or folder (a dataset of one's own, not a built-in name)."""
    from data.own import is_path
    from models import own as own_model

    def absolute(name: str, value: str) -> str:
        if name == "--model":
            return own_model.absolute(value) if own_model.is_spec(value) else value
        return os.path.abspath(value) if name in flags or is_path(value) else value

    out, i = [], 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name in flags + maybe_paths and eq:
            out.append(f"{name}={absolute(name, value)}")
        elif name in flags + maybe_paths and i + 1 < len(argv):
            out += [name, absolute(name, argv[i + 1])]
            i += 1
        else:
            out.append(argv[i])
        i += 1
    return out


def finished_epochs(out: Path) -> int | None:
    """The epochs done by the run whose checkpoint is in `out`, or None if it has none readable."""
    from helpers import npzio

    try:
        _, meta = npzio.read(out / "checkpoint.npz")
    except npzio.NpzError:
        return None
    epoch = (meta or {}).get("epoch")
    return epoch if isinstance(epoch, int) else None


def exit_code(returncode: int) -> int:
    """A child's exit status as the shell reports it: 128 + N for one killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit {exit_code(returncode)})"
    return f"exited with {returncode}"


INTERRUPTED = 130  # what LocalCluster.wait returns on Ctrl-C, having stopped every process


@dataclass
class Child:
    name: str
    argv: list[str]  # the script (absolute path) and its flags
    # What the interpreter runs under, e.g. ["ip", "netns", "exec", NS] to run it in a network namespace.
    prefix: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    pump: threading.Thread | None = field(default=None, repr=False)
    log: IO[str] | None = field(default=None, repr=False)

    @property
    def command(self) -> list[str]:
        """The command line started: the prefix, this interpreter, the script and its flags."""
        return [*self.prefix, sys.executable, *self.argv]


class LocalCluster:
    """Start children, stream their lines with a prefix, and stop them all if one fails.

    The first child is the PS. When a worker fails, the PS is given `ps_grace` seconds (if any) to notice
    (it names a silent worker after its step timeout), tell the others and exit on its own; only
    then is what is left terminated. `echo` True shows the children's lines as `prefixed` does, a
    TerminalFilter shows what it returns, False none (the lines go to the logs only). `env` is set
    for every child over the launcher's own settings; `cwd` None keeps the caller's.
    """

    def __init__(self, children: list[Child], log_dir: Path | None = None, ps_grace: float = 15.0,
                 echo: bool | TerminalFilter = True, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.children = children
        self.log_dir = log_dir
        self.ps_grace = ps_grace
        self.echo = bool(echo)
        self.terminal: TerminalFilter | None = prefixed if echo is True else (echo or None)
        self.env = env or {}
        self.cwd = cwd
        self.log_failure: str | None = None
        self.failure: str | None = None  # why wait() returned non-zero, in words (e.g. "w0 exited with 3")
        self.terminated: set[str] = set()  # children this launcher stopped itself (their exit says nothing)

    def start(self) -> None:
        """Open every log (OSError if one cannot be), then start the children in the caller's cwd."""
        if self.log_dir:
            # Appended to, never truncated: after a crash and --resume, the log that said why is still there.
            started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            for child in self.children:
                child.log = open(self.log_dir / f"{child.name}.log", "a")
                child.log.write(f"==== {started}: {child.name} started as: {' '.join([*child.prefix, *child.argv])}\n")
                child.log.flush()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL),
               "PYTHONUNBUFFERED": "1", **self.env}
        for child in self.children:
            child.proc = subprocess.Popen(
                child.command, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, bufsize=1,
                preexec_fn=die_with_parent,
            )
            child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.pump.start()

    def _pump(self, child: Child) -> None:
        for line in child.proc.stdout:
            shown = self.terminal(child.name, line) if self.terminal else None
            if shown is not None:
                sys.stdout.write(shown)
                sys.stdout.flush()
            if child.log:
                try:
                    child.log.write(line)
                    child.log.flush()
                except OSError as e:  # e.g. a full disk: the run stops (wait() sees it), the output goes on
                    self.log_failure = self.log_failure or f"cannot write {child.log.name} ({e.strerror or e})"
                    self._close_log(child)
        self._close_log(child)

    @staticmethod
    def _close_log(child: Child) -> None:
        log, child.log = child.log, None
        if log:
            try:
                log.close()
            except OSError:
                pass  # what could not be flushed was reported already

    def wait(self, timeout: float | None = None) -> int:
        """0 when every child exits 0; else stop the rest and return the first failure's exit code
        (1 for a log that cannot be written or a run longer than `timeout` seconds, INTERRUPTED on
        Ctrl-C); `failure` then says why. Any other exception stops every child and goes on up."""
        try:
            failed = self._first_failure(timeout)
            if failed is None:
                self._join_pumps()  # their last lines may still be on their way to the logs
                failed = self.log_failure
                if failed is None:
                    return 0
            if isinstance(failed, str):
                self.failure = failed
                print(f"[launcher] error: {failed}; stopping every process", flush=True)
                self.stop(grace=0)
                return 1
            child, code = failed
            self.failure = f"{child.name} {describe_exit(code)}"
            ps = self.children[0]
            if self.echo:
                print(f"[launcher] {child.name} {describe_exit(code)}", flush=True)
            if child is not ps and ps.proc.poll() is None and self.ps_grace > 0:
                if self.echo:
                    print(f"[launcher] waiting up to {self.ps_grace:.0f} s for the PS to name it and stop the run", flush=True)
                _wait_until(lambda: ps.proc.poll() is not None, self.ps_grace)
            self.stop(grace=5)
            return exit_code(code)
        except KeyboardInterrupt:
            self.failure = "interrupted"
            print("[launcher] interrupted; stopping every process", flush=True)
            self.stop(grace=5)
            return INTERRUPTED
        except BaseException:  # e.g. the caller's signal handler raising: nothing outlives the launcher's wait
            self.stop(grace=0)
            raise
        finally:
            self._join_pumps()

    def _join_pumps(self) -> None:
        try:
            for c in self.children:
                if c.pump:
                    c.pump.join(timeout=5)
        except KeyboardInterrupt:
            pass  # the processes are stopped already; their last lines may be cut

    def _first_failure(self, timeout: float | None) -> tuple[Child, int] | str | None:
        """Block until every child exited 0 (None), one failed (it and its code), or a log failed or
        `timeout` seconds passed (why)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.log_failure:
                return self.log_failure
            codes = [c.proc.poll() for c in self.children]
            for child, code in zip(self.children, codes):
                if code not in (None, 0):
                    return child, code
            if all(code == 0 for code in codes):
                return None
            if deadline is not None and time.monotonic() > deadline:
                return f"the run took over {timeout:.0f} s"
            time.sleep(0.2)

    def stop(self, grace: float) -> None:
        """Give the others a moment to fail on their own (they report why), then terminate them.

        Another Ctrl-C meanwhile cuts the wait short: every process left is killed at once. Safe to
        call again, and after a start() that failed part-way (only the children started are stopped).
        """
        started = [c for c in self.children if c.proc is not None]
        try:
            _wait_until(lambda: all(c.proc.poll() is not None for c in started), grace)
            for c in started:
                if c.proc.poll() is None:
                    self.terminated.add(c.name)
                    c.proc.terminate()
            for c in started:
                try:
                    c.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
        except KeyboardInterrupt:
            print("[launcher] interrupted again; killing every process now", flush=True)
            for c in started:
                if c.proc.poll() is None:
                    self.terminated.add(c.name)
                    c.proc.kill()
            for c in started:
                c.proc.wait()


    def resumable(self) -> bool:
        """Whether the run that failed can be finished by resuming it: the PS stopped it as a stall or runtime
        failure (runtime.deadline.STALLED) and every process this launcher did not stop itself exited on its
        own with 0 or STALLED (none was killed from outside or stopped by a mistake of its own)."""
        ps = self.children[0]
        if ps.proc is None or ps.proc.returncode != STALLED:
            return False
        return all(c.proc is not None and (c.name in self.terminated or c.proc.returncode in (0, STALLED))
                   for c in self.children)


def _wait_until(done, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        time.sleep(0.2)
