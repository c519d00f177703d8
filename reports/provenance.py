"""What every generated summary names: the commit, the command line, the machine and the versions."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# TensorFlow's wheel is published under several names; the first installed one is the version.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos")


def commit() -> str:
    """This checkout's commit, with '+dirty' when tracked files have changes; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def display_path(arg: str) -> str:
    """An absolute path inside the repository made relative to it (a --flag=PATH too); anything else as it is."""
    name, eq, value = arg.partition("=")
    if eq and name.startswith("--"):
        return f"{name}={display_path(value)}"
    if os.path.isabs(arg):
        try:
            return str(Path(arg).resolve().relative_to(ROOT))
        except ValueError:
            return arg
    return arg


def display_command(argv: list[str]) -> str:
    """`argv` as a shell line to rerun from the repository root: 'python' for the interpreter and paths
    inside the repository made relative, so no committed file carries this machine's absolute paths."""
    head, *rest = argv
    return shlex.join(["python" if "python" in Path(head).name else display_path(head), *map(display_path, rest)])


def _version(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def machine() -> dict:
    """Cores this process may use (what nproc prints), the CPU model, Python, TensorFlow and numpy versions.

    The versions come from the installed packages' metadata: importing TensorFlow for its version would
    take seconds."""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        cpu = ""
    return {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": cpu or platform.processor() or platform.machine(), "python": platform.python_version(),
            "tensorflow": _version(*TENSORFLOW_DISTRIBUTIONS), "numpy": _version("numpy")}


def provenance(argv: list[str]) -> dict:
    """The commit, the command (`argv`, displayed for rerunning) and the machine, for a summary's header."""
    return {"commit": commit(), "command": display_command(argv), "machine": machine()}


def markdown_lines(prov: dict) -> list[str]:
    m = prov["machine"]
    return [f"Made by `{prov['command']}` at commit `{prov['commit']}`.",
            f"Machine: {m['cpu']}, nproc {m['nproc']}; Python {m['python']}, TensorFlow {m['tensorflow']}, "
            f"numpy {m['numpy']}."]
