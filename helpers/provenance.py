"""Where a record came from: the commit, the command, the versions, the machine and the date.

Every run's record carries `record()` (summary.json, the stage's and the WNN's report.json, the
pipeline's comparison.json, the benchmarks' JSON). Records get committed under results/, so no
absolute path of this machine goes into one: paths inside the repository become relative to it,
paths inside the run directory `<run>/...`, paths in the home directory `~/...`.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent  # the repository (this file lives in its helpers/)
RUN = "<run>"  # what the run directory's own path is written as when it lies outside the repository
GIT_SECONDS = 10.0


def git_state(root: Path = ROOT) -> dict:
    """{"commit", "dirty"} of the checkout at `root`; both None, with "reason", when there is none
    (a tarball, no git, or `root` only inside another repository)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_SECONDS)
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or [f"git {args[0]} failed"])[0])
        return done.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != root.resolve():
            return {"commit": None, "dirty": None, "reason": "not a git checkout (only inside another repository)"}
        # Tracked files only: untracked outputs (runs/, predictors/ are ignored anyway) do not make code dirty.
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return {"commit": git("rev-parse", "HEAD"), "dirty": dirty}
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "reason": "git is not installed"}
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        reason = "not a git checkout" if "not a git repository" in str(e) else f"git failed: {e}"
        return {"commit": None, "dirty": None, "reason": reason}


def portable(text: str, run_dir: str | os.PathLike | None = None) -> str:
    """`text` (an argument, a command line) with absolute paths inside the repository made relative
    to it, inside `run_dir` written from RUN, inside the home directory from ~; others unchanged."""
    prefixes = [(str(ROOT), None)]
    if run_dir is not None:
        prefixes.append((os.path.abspath(run_dir), RUN))
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        prefixes.append((home, "~"))
    for prefix, name in prefixes:  # the repository first: a run directory inside it stays repository-relative
        # The prefix ends where the path does or a separator follows, so /work/x never matches /work/x2.
        pattern = re.compile(re.escape(prefix.rstrip("/")) + r"(/[^\s'\",:;=]*)?(?=$|[\s'\",:;=])")
        text = pattern.sub(lambda m: _relative(m.group(1), name), text)
    return text


def _relative(rest: str | None, name: str | None) -> str:
    tail = (rest or "").lstrip("/")
    if name is None:
        return tail or "."
    return f"{name}/{tail}" if tail else name


def portable_argv(argv: Sequence[str], run_dir: str | os.PathLike | None = None) -> list[str]:
    return [portable(arg, run_dir) for arg in argv]


def _version(module: str, *distributions: str) -> str | None:
    """A package's version without importing it when it is not loaded yet (TensorFlow takes seconds)."""
    if module in sys.modules:
        return getattr(sys.modules[module], "__version__", None)
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record(run_dir: str | os.PathLike | None = None, argv: Sequence[str] | None = None) -> dict:
    """The provenance of this process's record: git state, command line (default sys.argv, made
    portable; `cwd` says where relative paths in it start), versions, machine and date."""
    return {
        "git": git_state(),
        "argv": portable_argv(sys.argv if argv is None else argv, run_dir),
        "cwd": portable(os.getcwd(), run_dir),
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow", "tensorflow", "tensorflow-cpu"),
        "numpy": _version("numpy", "numpy"),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def commit_label() -> str:
    """This checkout's commit, with '+dirty' when tracked files have changes; 'unknown' outside git."""
    state = git_state()
    return "unknown" if state["commit"] is None else state["commit"] + ("+dirty" if state["dirty"] else "")


def display_command(argv: Sequence[str]) -> str:
    """`argv` as a shell line to rerun from the repository root ('python' for the interpreter)."""
    head, *rest = argv
    return shlex.join(["python" if "python" in Path(head).name else portable(head), *portable_argv(rest)])


def markdown_lines(origin: dict) -> list[str]:
    """A generated Markdown report's header: what made it, at which commit, on what machine."""
    git, machine = origin["git"], origin["machine"]
    state = "unknown" if git["commit"] is None else git["commit"] + (" (with uncommitted changes)" if git["dirty"] else "")
    return [f"Made by `{display_command(origin['argv'])}` at commit `{state}`, {origin['date']}.",
            f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {origin['python']}, "
            f"TensorFlow {origin['tensorflow']}, numpy {origin['numpy']}."]
