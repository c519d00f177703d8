"""helpers/provenance.py: the commit and its dirty flag, the portable command line, versions, machine and date."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import provenance
from helpers.provenance import ROOT, RUN

pytestmark = pytest.mark.unit

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def test_the_record_has_every_field():
    record = provenance.record()
    assert set(record) == {"git", "argv", "cwd", "python", "tensorflow", "numpy", "machine", "date"}
    assert record["python"] == platform.python_version() and record["numpy"] == np.__version__
    assert record["tensorflow"].startswith("2.")
    assert record["machine"]["cores"] == os.cpu_count() and record["machine"]["cpu"]
    date = datetime.datetime.fromisoformat(record["date"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - date) < datetime.timedelta(minutes=5)
    assert len(record["argv"]) == len(sys.argv)
    json.dumps(record)  # it goes into JSON files as it is


@needs_git
def test_the_commit_is_head_of_this_checkout():
    try:
        top, head = _git("-C", str(ROOT), "rev-parse", "--show-toplevel"), _git("-C", str(ROOT), "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        pytest.skip("the repository is not a git checkout here (a tarball)")
    state = provenance.git_state()
    assert os.path.samefile(top, ROOT)
    assert state["commit"] == head and isinstance(state["dirty"], bool), state


@needs_git
def test_the_dirty_flag_follows_tracked_files_in_a_clone(tmp_path):
    clone = tmp_path / "clone"
    _git("clone", "-q", "--shared", str(ROOT), str(clone))
    state = provenance.git_state(clone)
    assert state == {"commit": _git("-C", str(clone), "rev-parse", "HEAD"), "dirty": False}
    (clone / "an-untracked-file").write_text("output\n")
    assert provenance.git_state(clone)["dirty"] is False
    with open(clone / "README.md", "a") as f:
        f.write("a change\n")
    assert provenance.git_state(clone)["dirty"] is True
    # A folder inside another repository is not a checkout of this one.
    (clone / "sub").mkdir()
    inside = provenance.git_state(clone / "sub")
    assert inside["commit"] is None and "inside another repository" in inside["reason"]


def test_no_checkout_is_null_with_a_reason(tmp_path):
    state = provenance.git_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and state["reason"], state


def test_paths_in_the_command_line_become_relative(tmp_path):
    run = tmp_path / "run"
    argv = [str(ROOT / "mp2_ps.py"), "--out", str(run), f"--predictor={ROOT}/predictors/p.npz", "--snapshot-dir",
            str(run / "snapshots"), "--stage-flags", f"--init {ROOT}/a.npz --x 1", str(ROOT), f"{ROOT}2/other", "--lr", "0.1"]
    record = provenance.record(run, argv)
    assert record["argv"] == ["mp2_ps.py", "--out", RUN, "--predictor=predictors/p.npz", "--snapshot-dir",
                              f"{RUN}/snapshots", "--stage-flags", "--init a.npz --x 1", ".", f"{ROOT}2/other", "--lr", "0.1"]
    # A run directory inside the repository stays relative to the repository.
    inside = provenance.record(ROOT / "runs" / "x", [str(ROOT / "runs" / "x" / "snapshots")])
    assert inside["argv"] == ["runs/x/snapshots"]
    assert str(ROOT) + "/" not in json.dumps(inside)
