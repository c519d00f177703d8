"""MP² on a task its predictor never saw: the stage's --init, online MP²'s warm start, the control's schedule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster import SMALL as CLUSTER_SMALL
from runtime.methods.mp2_options import MP2Options
from tests.cluster import correction_entries, read_jsonl, run
from tests.test_runtime import CONTROL, LENET, STEPS_PER_EPOCH
from tests.test_train_stage import SMALL as STAGE_SMALL
from tests.test_train_stage import error_line, train_stage, train_stages

pytestmark = pytest.mark.cluster

# Stage rounds (mp2_train_stage.py processes): what the warm start's --init reaches is read from their reports.
ONLINE = ["--online-wait", "--refresh-every", "10", "--refresh-steps", "2", "--switch-tolerance", "1",
          "--watch-tolerance", "1", "--online-rounds", "stage",
          "--online-stage-flags", "--epochs 1 --image-batches 2 --val-images 200 --eval-images 200"]


@pytest.fixture(scope="module")
def trained(snapshots, tmp_path_factory) -> Path:
    """A predictor trained one epoch on the synthetic snapshots: what --init and --predictor-init start from."""
    out = tmp_path_factory.mktemp("init") / "pred"
    done = train_stage(*STAGE_SMALL, "--snapshots", str(snapshots), "--out", str(out), "--epochs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_stage_init_starts_from_the_given_predictor(snapshots, trained, tmp_path):
    """Epoch 0 (before any training) of a stage given --init scores what the given predictor scored."""
    common = [*STAGE_SMALL, "--snapshots", str(snapshots), "--epochs", "0"]
    started, fresh = train_stages([*common, "--init", str(trained), "--out", str(tmp_path / "init")],
                                  [*common, "--out", str(tmp_path / "fresh")])
    assert started.returncode == 0 and fresh.returncode == 0, started.stderr + fresh.stderr
    given = _report(trained)["best"]
    epoch0, fresh0 = _report(tmp_path / "init")["rows"][0], _report(tmp_path / "fresh")["rows"][0]
    assert epoch0["val_assembled_acc"] == pytest.approx(given["val_assembled_acc"])
    assert epoch0["val_assembled_acc"] != pytest.approx(fresh0["val_assembled_acc"])
    assert _report(tmp_path / "init")["config"]["init"] == str(trained.resolve())
    # A given predictor is not shaken by fresh Adam's first steps: one epoch of lr warm-up by default.
    assert _report(tmp_path / "init")["config"]["lr_warmup"] == _report(tmp_path / "init")["steps_per_epoch"] > 0
    assert _report(tmp_path / "fresh")["config"]["lr_warmup"] == 0


def test_stage_init_errors(snapshots, trained, tmp_path):
    common = [*STAGE_SMALL, "--snapshots", str(snapshots), "--epochs", "0"]
    both, other_push, missing = (error_line(done) for done in train_stages(
        [*common, "--init", str(trained), "--resume", "--out", str(tmp_path / "a")],
        [*common, "--push", "front+head", "--init", str(trained), "--out", str(tmp_path / "b")],
        [*common, "--init", str(tmp_path / "none"), "--out", str(tmp_path / "c")]))
    assert "--init and --resume" in both
    assert other_push.startswith("mp2_train_stage: error: --init:") and "conv1" in other_push and "fc3" in other_push
    assert "--init:" in missing


def _full_steps(steps: int, switch: int, every: int = 10, window: int = 2) -> int:
    return sum(1 for s in range(steps) if s < switch or s % every < window)


def _pushed_bytes(full: int, partial: int, workers: int = 2) -> int:
    """Full steps push the model; partial ones the pushed group and the correction's Top-k (the default)."""
    sparse = correction_entries(LENET.layout, MP2Options().for_run(STEPS_PER_EPOCH).correction_ratio)
    return workers * (4 * LENET.layout.total * full + (4 * LENET.layout.pushed + 8 * sparse) * partial)


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
    assert full + partial == steps and full == _full_steps(steps, switch=4)
    assert summary["bytes_pushed_total"] == _pushed_bytes(full, partial)
    assert summary["bytes_pulled_total"] == 2 * (4 * LENET.layout.total + CONTROL) * steps


def test_control_on_online_schedule_holds_and_counts_every_byte(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--epochs", "2", "--prediction", "hold",
               "--control-switch-step", "7", "--refresh-every", "10", "--refresh-steps", "2",
               "--out", str(out), *CLUSTER_SMALL, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    steps = 2 * STEPS_PER_EPOCH
    full, partial = summary["phases"].get("full", 0), summary["phases"].get("partial", 0)
    assert full + partial == steps and full == _full_steps(steps, switch=8) and partial > 0  # as MP² switching at 7
    assert summary["bytes_pushed_total"] == _pushed_bytes(full, partial)
    assert summary["method_stats"]["online"]["control_switch_step"] == 7


@pytest.mark.parametrize("flags, says", [
    (["--predictor-init", "x.npz", "--prediction", "hold"], "--predictor-init is online MP²'s warm start"),
    (["--control-switch-step", "5"], "--control-switch-step gives the control"),
    (["--predictor-init", "/nonexistent/p.npz"], "/nonexistent/p.npz"),
    # --online-stage-flags are parsed as a round's mp2_train_stage.py would, before any cluster forms
    (["--online-stage-flags", "--epochz 3"], "ps: error: --online-stage-flags: unrecognized arguments: --epochz 3"),
    (["--online-stage-flags", "--epochs 2 --out x"], "--online-stage-flags: --out is the PS's to give each round"),
])
def test_warm_start_and_control_flag_errors(tmp_path, flags, says):
    done = run("mp2_ps.py", "--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--method", "mp2",
               *flags, "--out", str(tmp_path), *CLUSTER_SMALL, timeout=120)
    assert done.returncode != 0 and says in done.stdout and "Traceback" not in done.stdout, done.stdout[-2000:]



def test_a_rank_r_warm_start_is_refused(tmp_path):
    """Online rounds train the reference's rank-one heads: a rank-R warm start could never be refined."""
    import models
    from predictor import Predictor, save_checkpoint

    layout = models.get("lenet5", 10, push="conv1").layout  # conv2 predicted: a conv head
    path = tmp_path / "rank2.npz"
    save_checkpoint(str(path), layout, Predictor(layout, seed=0, head_rank=2).numpy_weights())
    done = run("mp2_ps.py", "--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--method", "mp2",
               "--push", "conv1", "--predictor-init", str(path), "--out", str(tmp_path), *CLUSTER_SMALL, timeout=120)
    assert done.returncode != 0 and "decoder heads of rank 2" in done.stdout, done.stdout[-2000:]
    assert "Traceback" not in done.stdout


def test_a_stage_started_with_init_resumes(snapshots, trained, tmp_path):
    """--resume excludes --init: the resumed run takes --init and its warm-up from the saved state."""
    out = tmp_path / "run"
    common = [*STAGE_SMALL, "--snapshots", str(snapshots), "--out", str(out)]
    first = train_stage(*common, "--epochs", "1", "--init", str(trained))
    assert first.returncode == 0, first.stdout + first.stderr
    again = train_stage(*common, "--epochs", "2", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    config = _report(out)["config"]
    assert config["init"] == str(trained.resolve()) and config["lr_warmup"] == _report(out)["steps_per_epoch"]
    assert [row["epoch"] for row in _report(out)["rows"]] == [0, 1, 2]
