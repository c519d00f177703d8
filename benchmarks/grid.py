"""A grid of local-cluster runs (mp2_local.py), one directory per (setting, seed), resumable.

A setting is a label and the flags that make it (any method, by name and flags, so methods this tree
does not know yet can be in a grid: their runs fail, are recorded as failed, and the grid goes on).
A run whose summary.json exists is done and is never run again; one that failed or was cut short is
run afresh. Each run's output goes to its directory's mp2_local.log, never to the terminal.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from helpers import npzio
from helpers.provenance import ROOT, display_command, portable
from reports.frontier import CANDIDATE, FAILED, LOG, MARKER
from runtime import cmdline
from runtime.launcher import Child, LocalCluster

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# The grid decides these for every run: a setting or the common flags may not.
INTERRUPTED = 130  # what LocalCluster.wait returns on Ctrl-C, having stopped the run
GRID_DECIDES = ("--seed", "--out", "--workers", "--resume", "--ps_hosts", "--worker_hosts", "--task_index")


class GridError(Exception):
    """A grid that cannot run as asked, for a reason the user can fix."""


@dataclass
class Setting:
    label: str
    flags: list[str]
    prior_run: str | None = None         # the run its --predictor's snapshots came from (its cost is added)
    predictor_report: str | None = None  # that predictor's report.json (its training time is added)
    family: str | None = None            # the curve it belongs to in the plot (default: its method)
    tune: dict[str, list[str]] | None = None  # {flag: [values]}: candidates ROW__TAG, the first the default
    inherit: dict[str, str] | None = None     # {flag: row}: the value that row's tuning chose
    seeds: list[int] | None = None            # its own seeds (default: the grid's)
    workers: int | None = None                # its own worker count (default: --workers)

    @classmethod
    def parse(cls, text: str) -> "Setting":
        """'LABEL=FLAGS', e.g. 'localsgd-H16=--method localsgd --sync-every 16'."""
        label, eq, flags = text.partition("=")
        if not eq:
            raise GridError(f"setting {text!r}: write LABEL=FLAGS, e.g. 'localsgd-H16=--method localsgd --sync-every 16'")
        return cls(label.strip(), shlex.split(flags))

    @classmethod
    def from_dict(cls, value: dict) -> "Setting":
        keys = ("label", "flags", "prior_run", "predictor_report", "family", "tune", "inherit", "seeds", "workers")
        unknown = set(value) - set(keys)
        if unknown or "label" not in value:
            raise GridError(f"a setting has keys {', '.join(keys)}; got {sorted(value)}")
        flags = value.get("flags", [])
        tune = value.get("tune")
        if tune is not None and (not isinstance(tune, dict) or len(tune) != 1
                                 or not all(isinstance(v, list) and v for v in tune.values())):
            raise GridError(f"setting {value['label']}: tune is one flag and its values, e.g. {{\"--lr\": [\"0.003\", \"0.006\"]}}")
        return cls(value["label"], shlex.split(flags) if isinstance(flags, str) else list(flags),
                   value.get("prior_run"), value.get("predictor_report"), value.get("family"),
                   None if tune is None else {k: [str(v) for v in vs] for k, vs in tune.items()},
                   value.get("inherit"), value.get("seeds"), value.get("workers"))

    def candidates(self) -> list["Setting"]:
        """A tuned setting's candidates (ROW__TAG, its flags plus the tuned one), the default first; an
        untuned one is its own only candidate."""
        if not self.tune:
            return [self]
        (flag, values), = self.tune.items()
        return [dataclasses.replace(self, label=f"{self.label}{CANDIDATE}{flag.lstrip('-')}{v}", flags=[*self.flags, flag, v],
                                    tune=None) for v in values]

    def check(self) -> None:
        if not LABEL.match(self.label) or CANDIDATE in self.label:
            raise GridError(f"setting label {self.label!r}: letters, digits and . _ + - only (it names a directory), "
                            f"and no {CANDIDATE} (it marks a tuning candidate)")
        for flag in [*(self.tune or {}), *(self.inherit or {})]:
            if flag in self.flags or not flag.startswith("--"):
                raise GridError(f"setting {self.label}: {flag} is tuned or inherited: name it as --FLAG and leave it out of its flags")
        check_flags(self.flags, f"setting {self.label}")


def check_flags(flags: list[str], where: str) -> None:
    for name in cmdline.names(flags):
        if name in GRID_DECIDES:
            raise GridError(f"{where}: {name} is the grid's to decide (--seeds, --root, --workers); leave it out")


@dataclass
class Run:
    setting: Setting
    seed: int
    run_dir: Path
    flags: list[str]  # everything mp2_local.py gets after --workers and --out
    workers: int

    @property
    def argv(self) -> list[str]:
        return [str(ROOT / "mp2_local.py"), "--workers", str(self.workers), "--out", str(self.run_dir), *self.flags]

    @property
    def done(self) -> bool:
        return (self.run_dir / "summary.json").exists()

    def name(self) -> str:
        return f"{self.setting.label} seed {self.seed}"


def plan(settings: list[Setting], seeds: list[int], common: list[str], root: Path, workers: int) -> list[Run]:
    """Every (setting, seed) as a run, setting by setting (a setting's own worker count wins)."""
    return [Run(s, seed, root / s.label / f"seed{seed}", [*cmdline.merge(common, s.flags), "--seed", str(seed)],
                s.workers or workers)
            for s in settings for seed in seeds]


def command_line(run: Run, python: str = "python") -> str:
    return display_command([python, *run.argv])


def recorded_flags(run: Run) -> list[str] | None:
    """The flags a finished run was made with, from its marker (None if it has none)."""
    marker = run.run_dir / MARKER
    if not marker.exists():
        return None
    try:
        return json.loads(marker.read_text()).get("flags")
    except (OSError, ValueError):
        return None


@dataclass
class Outcome:
    ok: bool
    seconds: float
    final: float | None = None      # the final test accuracy
    selected: float | None = None   # the test accuracy at the best validation epoch
    reason: str = ""
    interrupted: bool = False


def _failure_reason(log: Path, code: int) -> str:
    """The first line of the log that names an error (the cause comes first; the launcher's lines follow)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    cause = next((line for line in lines if re.search(r"\berror:", line, re.I)), lines[-1] if lines else "no output")
    return f"exit {code}: {cause}"


def run_one(run: Run, commit: str, python: str) -> Outcome:
    """Run `run` afresh in its directory (a failed or cut-short earlier attempt is removed first); its
    output goes to mp2_local.log there; a failure is recorded in frontier-failed.json."""
    if run.run_dir.exists():
        if any(run.run_dir.iterdir()) and not (run.run_dir / MARKER).exists():
            return Outcome(False, 0.0, reason=f"{portable(str(run.run_dir))} exists and is not a run of this grid; "
                                              f"move it away")
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True)
    npzio.write_json(run.run_dir / MARKER, {
        "label": run.setting.label, "seed": run.seed, "flags": run.flags, "workers": run.workers, "commit": commit,
        "command": portable(command_line(run)), "prior_run": run.setting.prior_run,
        "predictor_report": run.setting.predictor_report, "family": run.setting.family,
        "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    cluster = LocalCluster([Child("mp2_local", run.argv)], log_dir=run.run_dir, echo=False)
    started = time.monotonic()
    try:
        cluster.start()
    except OSError as e:
        return Outcome(False, 0.0, reason=f"cannot write {run.run_dir / LOG} ({e.strerror or e})")
    code = cluster.wait()
    seconds = time.monotonic() - started
    if code == 0 and run.done:
        summary = json.loads((run.run_dir / "summary.json").read_text())
        return Outcome(True, seconds, final=summary["final_test_acc"], selected=summary.get("test_acc_at_best_val"))
    if code == INTERRUPTED:  # not a failure: left as cut short, so the next session runs it afresh
        return Outcome(False, seconds, reason="interrupted", interrupted=True)
    reason = _failure_reason(run.run_dir / LOG, code) if code else "exit 0 without a summary.json"
    npzio.write_json(run.run_dir / FAILED, {"exit_code": code, "reason": reason, "seconds": seconds,
                                            "log": portable(str(run.run_dir / LOG))})
    return Outcome(False, seconds, reason=reason)
