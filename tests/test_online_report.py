"""What a run says MP² did: its PS's last lines and summary.json's method_stats.steps (real processes)."""
from __future__ import annotations

import json

import pytest

from tests.cluster import SMALL, run
from tests.test_runtime import STEPS_PER_EPOCH

pytestmark = pytest.mark.cluster


def test_an_online_run_that_never_switched_says_why_and_counts_its_full_steps(tmp_path):
    """One epoch of 20 steps cannot collect 100 warm-up snapshots: no round starts, and the run says so."""
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--epochs", "1", "--warmup-snapshots", "100",
               "--out", str(out), *SMALL, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    ps_lines = [line for line in done.stdout.splitlines() if line.startswith("[ps] ")]
    assert ps_lines[-1] == (
        f"[ps] ps: warning: MP² never switched to prediction: all {STEPS_PER_EPOCH} steps pushed the whole model "
        f"(no predictor round started: {STEPS_PER_EPOCH} of the 100 warm-up snapshots (--warmup-snapshots, one every "
        f"--online-snapshot-every 1 steps) were taken)"), ps_lines[-3:]
    assert f"0 of {STEPS_PER_EPOCH} steps pushed the pushed group" in ps_lines[-2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_stats"]["steps"] == {"partial": 0, "full": STEPS_PER_EPOCH,
                                                "full_by_reason": {"warm-up": STEPS_PER_EPOCH}}
    # The derived defaults are what the run used (20 steps per epoch: the digits floor for the spacing).
    assert summary["method_options"]["online_snapshot_every"] == 1 and summary["method_options"]["warmup_snapshots"] == 100
