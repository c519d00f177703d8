"""MP² on a task its predictor never saw: the stage's --init, online MP²'s warm start, the control's schedule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster import SMALL as CLUSTER_SMALL
from tests.cluster import read_jsonl, run, run_in_one
from tests.test_runtime import CONTROL, LENET, STEPS_PER_EPOCH, full_steps, pushed_bytes
from tests.test_train_stage import SMALL as STAGE_SMALL
from tests.test_train_stage import error_line, refusals, train_stage, train_stages

pytestmark = pytest.mark.cluster

# Stage rounds (mp2_train_stage.py processes): what the warm start's --init reaches is read from their reports.
ONLINE = ["--online-wait", "--refresh-every", "10", "--refresh-steps", "2", "--switch-tolerance", "1",
          "--watch-tolerance", "1", "--online-rounds", "stage",
          "--online-stage-flags", "--epochs 1 --image-batches 2 --val-images 200 --eval-images 200"]


@pytest.fixture(scope="module")
def trained(one_epoch_predictor) -> Path:
    """A predictor trained one epoch on the synthetic snapshots: what --init and --predictor-init start from
    (tests/conftest.py's one_epoch_predictor, built once in the session)."""
    return one_epoch_predictor


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_stage_init_starts_from_the_given_predictor_and_a_stage_started_with_init_resumes(snapshots, trained, tmp_path):
    """Epoch 0 (before any training) of a stage given --init scores what the given predictor scored. --resume
    excludes --init: the resumed run takes --init and its warm-up from the saved state."""
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    common = [*STAGE_SMALL, "--snapshots", str(snapshots)]
    started, untrained = train_stages([*common, "--epochs", "1", "--init", str(trained), "--out", str(out)],
                                      [*common, "--epochs", "0", "--out", str(fresh)])
    assert started.returncode == 0 and untrained.returncode == 0, started.stderr + untrained.stderr
    given = _report(trained)["best"]
    epoch0, fresh0 = _report(out)["rows"][0], _report(fresh)["rows"][0]
    assert epoch0["epoch"] == 0 and fresh0["epoch"] == 0
    assert epoch0["val_assembled_acc"] == pytest.approx(given["val_assembled_acc"])
    assert epoch0["val_assembled_acc"] != pytest.approx(fresh0["val_assembled_acc"])
    assert _report(out)["config"]["init"] == str(trained.resolve())
    # A given predictor is not shaken by fresh Adam's first steps: one epoch of lr warm-up by default.
    assert _report(out)["config"]["lr_warmup"] == _report(out)["steps_per_epoch"] > 0
    assert _report(fresh)["config"]["lr_warmup"] == 0

    again = train_stage(*common, "--out", str(out), "--epochs", "2", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    config = _report(out)["config"]
    assert config["init"] == str(trained.resolve()) and config["lr_warmup"] == _report(out)["steps_per_epoch"]
    assert [row["epoch"] for row in _report(out)["rows"]] == [0, 1, 2]


def test_stage_init_errors(snapshots, trained, tmp_path):
    common = [*STAGE_SMALL, "--snapshots", str(snapshots), "--epochs", "0"]
    both, other_push, missing = (error_line(done) for done in refusals(
        [*common, "--init", str(trained), "--resume", "--out", str(tmp_path / "a")],
        [*common, "--push", "front+head", "--init", str(trained), "--out", str(tmp_path / "b")],
        [*common, "--init", str(tmp_path / "none"), "--out", str(tmp_path / "c")]))
    assert "--init and --resume" in both
    assert other_push.startswith("mp2_train_stage: error: --init:") and "conv1" in other_push and "fc3" in other_push
    assert "--init:" in missing


def test_online_warm_start_switches_at_the_first_snapshot_and_counts_every_byte(trained, tmp_path):
    """--predictor-init: checked at the first warm-up snapshot, live from the next step, and the first
    training round starts from it; partial steps snapshot too (--partial-snapshot-every); every step's
    bytes counted by its phase."""
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--epochs", "2", "--predictor-init", str(trained),
               "--warmup-snapshots", "50", "--online-snapshot-every", "3", "--retrain-after", "3",
               "--partial-snapshot-every", "7", *ONLINE,
               "--out", str(out), *CLUSTER_SMALL, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    online = summary["method_stats"]["online"]
    events = online["events"]
    checked = [e for e in events if e["event"] == "initial predictor checked"]
    assert len(checked) == 1 and checked[0]["step"] == 3 and checked[0]["passed"]
    switch = [e for e in events if e["event"] == "switch to mp2"][0]
    assert switch == {"step": 3, "event": "switch to mp2", "round": 0}
    assert any(e["event"] == "switch to mp2" for r in read_jsonl(out / "metrics.jsonl") for e in r["events"])
    assert online["predictor_init"] == str((trained / "predictor.npz").resolve())
    assert online["rounds"] >= 1  # after --retrain-after new snapshots, although --warmup-snapshots is far off
    first_round = _report(out / "online" / "predictor-1")
    assert first_round["config"]["init"] == online["predictor_init"]
    # Snapshots: the warm-up's one, each refresh window's last step, and every 7th partial step.
    taken = json.loads((out / "online" / "snapshots" / "manifest.json").read_text())["snapshots"]
    partial_steps = [s for s in range(4, 2 * STEPS_PER_EPOCH) if s % 10 >= 2]
    assert [r["step"] for r in taken if r.get("phase") == "partial"] == [s + 1 for s in partial_steps if (s + 1) % 7 == 0]
    assert [r["step"] for r in taken if r.get("phase") != "partial"] == [3] + [
        s + 1 for s in range(3, 2 * STEPS_PER_EPOCH) if s % 10 == 1]
    rounds = [e for e in events if e["event"] == "trained"]
    later = [e for e in rounds if "latest_live_acc" in e]  # judged against the live predictor too
    assert later and all(e["passed"] == (e["latest_candidate_acc"] >= e["latest_live_acc"]) for e in later)
    steps = 2 * STEPS_PER_EPOCH
    full, partial = summary["phases"].get("full", 0), summary["phases"].get("partial", 0)
    # Checked after step 3 (1-based); step 4's phase was announced in step 3's reply, so step 5 is the first partial.
    assert full + partial == steps and full == full_steps(steps, switch=4)
    assert summary["bytes_pushed_total"] == pushed_bytes(full, partial)
    assert summary["bytes_pulled_total"] == 2 * (4 * LENET.layout.total + CONTROL) * steps


# The control on the online schedule (--prediction hold --control-switch-step N) holds and counts every byte:
# checked on the control run of tests/test_runtime.py's test_an_online_mp2_run_resumed_ends_where_the_uninterrupted_one_ends.


def test_warm_start_and_control_flag_errors_and_a_rank_r_warm_start_are_refused(tmp_path):
    """Each a one-line refusal of the PS before any cluster forms; the cases run in one process (tests/cluster.py's
    run_in_one). Online rounds train the reference's rank-one heads: a rank-R warm start could never be refined."""
    import models
    from predictor import Predictor, save_checkpoint

    layout = models.get("lenet5", 10, push="conv1").layout  # conv2 predicted: a conv head
    rank2 = tmp_path / "rank2.npz"
    save_checkpoint(str(rank2), layout, Predictor(layout, seed=0, head_rank=2).numpy_weights())
    cases = [
        (["--predictor-init", "x.npz", "--prediction", "hold"], "--predictor-init is online MP²'s warm start"),
        (["--control-switch-step", "5"], "--control-switch-step gives the control"),
        (["--predictor-init", "/nonexistent/p.npz"], "/nonexistent/p.npz"),
        # --online-stage-flags are parsed as a round's mp2_train_stage.py would, before any cluster forms
        (["--online-stage-flags", "--epochz 3"], "ps: error: --online-stage-flags: unrecognized arguments: --epochz 3"),
        (["--online-stage-flags", "--epochs 2 --out x"], "--online-stage-flags: --out is the PS's to give each round"),
        (["--push", "conv1", "--predictor-init", str(rank2)], "decoder heads of rank 2"),
    ]
    runs = run_in_one("mp2_ps.py", *[["--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--method", "mp2",
                                      *flags, "--out", str(tmp_path), *CLUSTER_SMALL] for flags, _ in cases])
    for (flags, says), done in zip(cases, runs):
        assert done.returncode != 0 and says in done.stdout and "Traceback" not in done.stdout, (flags, done.stdout[-2000:])

