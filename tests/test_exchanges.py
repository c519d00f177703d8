"""Steps with no exchange (local SGD) and with two (PowerSGD), with real processes on 127.0.0.1; their resume,
and a shorter run being the first epochs of a longer one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import data
import models
from tests.cluster import SMALL, built_once, check_resumed, correction_entries, powersgd_sizes, read_jsonl, run, run_together

LENET = models.get("lenet5", 10)
T = LENET.layout.total
STEPS = data.Schedule(2000, 2, 50, 0).steps_per_epoch  # 20: synthetic's 2000 images, 2 workers of 50
CONTROL = 16
COMMON = ["--workers", "2", *SMALL, "--verify-sync"]
H = 3  # does not divide the 20 steps of an epoch: the epoch-end sync and the resume are both exercised
LOCALSGD = ["--method", "localsgd", "--sync-every", str(H)]
# Online MP² exchanging every H steps; its schedule counts exchanges (a tolerance of 1: every check passes). The
# correction (off by default with a sync interval) is asked for, so its bytes at exchanges are checked too.
MP2_ONLINE = ["--method", "mp2", "--push", "front+head", "--sync-every", str(H), "--correction-ratio", "0.005",
              "--epochs", "2", "--warmup-snapshots", "3",
              "--online-snapshot-every", "1", "--refresh-every", "5", "--refresh-steps", "1", "--retrain-after", "2",
              "--switch-tolerance", "1", "--watch-tolerance", "1", "--first-round-steps", "20", "--round-steps", "10"]


OUTER = ["--method", "localsgd", "--sync-every", "2", "--outer-lr", "0.7", "--outer-momentum", "0.9", "--trace-steps", "6"]
POWERSGD = ["--method", "powersgd", "--rank", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every independent run of this file at once (most of a small run is start-up); built once in the session
    (tests/cluster.py's built_once). "split" and "powersgd-split" are resumed by their tests, in place; the
    1-epoch summary of "powersgd-split" is kept beside it."""
    def build(root: Path) -> dict:
        plan = {
            "whole": [*LOCALSGD, "--epochs", "2"],
            "split": [*LOCALSGD, "--epochs", "1"],
            "h1": ["--method", "localsgd", "--sync-every", "1", "--epochs", "1"],
            "baseline": ["--method", "baseline", "--epochs", "1"],
            "outer": [*OUTER, "--epochs", "1"],
            "outer-long": [*OUTER, "--epochs", "2"],
            "powersgd": [*POWERSGD, "--epochs", "2", "--trace-steps", "2"],
            "powersgd-split": [*POWERSGD, "--epochs", "1"],
            "mp2": MP2_ONLINE,
        }
        done = run_together(*[("mp2_local.py", *COMMON, *flags, "--out", str(root / name)) for name, flags in plan.items()],
                            timeout=900)
        for name, d in zip(plan, done):
            assert d.returncode == 0, f"{name}: {d.stdout[-4000:]}"
        shutil.copy(root / "powersgd-split" / "summary.json", root / "powersgd-split-summary.json")
        return {name: str(root / name) for name in plan}

    return {name: Path(path) for name, path in built_once(tmp_path_factory, "exchanges-runs", build).items()}


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def _model(out) -> np.ndarray:
    return np.load(out / "checkpoint.npz")["model"]


def _syncs(epoch: int) -> int:
    """Steps of epoch `epoch` (0-based) that exchange: every H-th global step and the epoch's last."""
    steps = range(epoch * STEPS, (epoch + 1) * STEPS)
    return sum(1 for s in steps if (s + 1) % H == 0 or s == steps[-1])


@pytest.mark.cluster
def test_localsgd_pushes_the_model_only_at_syncs_and_stays_in_sync_there(runs):
    summary, records = _summary(runs["whole"]), read_jsonl(runs["whole"] / "metrics.jsonl")
    syncs = [_syncs(0), _syncs(1)]
    assert syncs == [7, 8]  # 3, 6, ..., 18 and 20; 21, 24, ..., 39 and 40
    for r, n in zip(records, syncs):
        assert r["phases"] == {"local": STEPS - n, "sync": n}
        assert [w["steps_verified_in_sync"] for w in r["workers"]] == [n, n]  # --verify-sync at every sync
        assert r["bytes_pushed"] == 2 * 4 * T * n
    baseline = _summary(runs["baseline"])
    per_step = baseline["bytes_pushed_total"] / STEPS  # one epoch of the baseline
    assert summary["bytes_pushed_total"] == per_step * sum(syncs)  # (syncs / steps) of the baseline's bytes
    assert summary["bytes_pulled_total"] == baseline["bytes_pulled_total"] / STEPS * sum(syncs)
    assert summary["bytes_pulled_total"] == 2 * (4 * T + CONTROL) * sum(syncs)
    assert summary["test_acc_by_epoch"][-1] > 0.3


@pytest.mark.cluster
def test_localsgd_syncing_every_step_is_the_baseline_bit_for_bit(runs):
    np.testing.assert_array_equal(_model(runs["h1"]), _model(runs["baseline"]))
    ours, theirs = _summary(runs["h1"]), _summary(runs["baseline"])
    for key in ("bytes_pushed_total", "bytes_pulled_total", "test_acc_by_epoch"):
        assert ours[key] == theirs[key], key
    assert ours["phases"] == {"sync": STEPS}


@pytest.mark.cluster
def test_the_outer_nesterov_step_by_hand(runs):
    """Syncs at steps 1, 3, 5: the reply is θ − lr·(g + μ·v), v = μ·v + g, g = θ − mean of the pushed models."""
    traces = [np.load(runs["outer"] / f"trace-worker-{i}.npz") for i in (0, 1)]
    theta, velocity = LENET.init_vector(0).astype(np.float32), np.zeros(T, np.float32)
    lr, mu = np.float32(0.7), np.float32(0.9)
    for s in range(6):
        if s % 2 == 0:  # a local step: each worker trained alone, nothing was exchanged
            assert int(traces[0][f"{s}/phase"]) == -1 and f"{s}/up/0" not in traces[0]
            assert not np.array_equal(traces[0][f"{s}/trained"], traces[1][f"{s}/trained"])
            continue
        ups = [t[f"{s}/up/0"] for t in traces]
        g = theta - (ups[0] + ups[1]) / np.float32(2)
        velocity = mu * velocity + g
        theta = theta - lr * (g + mu * velocity)
        np.testing.assert_allclose(traces[0][f"{s}/reply/0"], theta, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(traces[0][f"{s}/reply/0"], traces[1][f"{s}/reply/0"])
    state = np.load(runs["outer"] / "checkpoint.npz")
    assert [k for k in state.files if k.startswith("state/")] == ["state/000/outer_velocity"]  # PS state, saved


@pytest.mark.cluster
def test_localsgd_resumed_mid_run_ends_in_the_uninterrupted_model(runs):
    split = runs["split"]
    again = run("mp2_local.py", *COMMON, *LOCALSGD, "--epochs", "2", "--resume", "--out", str(split))
    assert again.returncode == 0, again.stdout[-4000:]
    assert "resuming after epoch 1" in again.stdout and "warning" not in again.stdout, again.stdout[-4000:]
    np.testing.assert_array_equal(_model(split), _model(runs["whole"]))
    assert _summary(split)["test_acc_by_epoch"] == _summary(runs["whole"])["test_acc_by_epoch"]



@pytest.mark.cluster
def test_powersgd_bytes_follow_the_layout_and_rank_and_models_stay_in_sync(runs):
    out = runs["powersgd"]
    summary, records = _summary(out), read_jsonl(out / "metrics.jsonl")
    assert len(records) == 2
    for record in records:
        assert [w["steps_verified_in_sync"] for w in record["workers"]] == [STEPS, STEPS]
    p, q, dense = powersgd_sizes(LENET.layout, 2)
    assert (p, q, dense) == (472, 1270, 236)
    steps = 2 * STEPS * 2  # epochs x steps x workers
    assert summary["bytes_pushed_total"] == 4 * (p + dense + q) * steps  # exchange 1, then exchange 2
    assert summary["bytes_pulled_total"] == (4 * (p + dense) + CONTROL + 4 * q + CONTROL) * steps
    assert summary["test_acc_by_epoch"][-1] > 0.3


@pytest.mark.cluster
def test_powersgd_resumed_gives_what_the_uninterrupted_run_gives(runs):
    """Same seed: 2 epochs in one go, or 1 and then --resume to 2, end in the same model, bit for bit. PowerSGD's
    residuals or warm-started Q lost, or mixup draws restarted from the seed, would make the models differ."""
    split = runs["powersgd-split"]
    saved = json.loads((split.parent / "powersgd-split-summary.json").read_text())
    again = run("mp2_local.py", *COMMON, *POWERSGD, "--epochs", "2", "--resume", "--out", str(split))
    check_resumed(runs["powersgd"], split, saved, again)


@pytest.mark.cluster
def test_a_shorter_budget_is_the_first_epochs_of_a_longer_run(runs):
    """The frontier reads its 10-epoch budget from the 30-epoch runs: that holds only if nothing before a run's
    end depends on --epochs (rate schedule, data order, mixup draws, the outer step's state)."""
    first, prefix = read_jsonl(runs["outer"] / "metrics.jsonl")[0], read_jsonl(runs["outer-long"] / "metrics.jsonl")[0]
    same = ("test_acc", "val_acc", "loss", "train_acc", "bytes_pushed", "bytes_pulled")
    assert {k: first[k] for k in same} == {k: prefix[k] for k in same}
    assert len(read_jsonl(runs["outer-long"] / "metrics.jsonl")) == 2


@pytest.mark.cluster
def test_powersgd_replies_are_the_orthonormalised_mean_of_p_then_the_mean_of_q(runs):
    from compression.powersgd import Plan

    plan = Plan([p.shape for p in LENET.layout.params], 2)
    traces = [np.load(runs["powersgd"] / f"trace-worker-{i}.npz") for i in (0, 1)]
    for s in (0, 1):
        first = [t[f"{s}/exchange/0/up/0"] for t in traces]
        assert not np.allclose(first[0], first[1])  # the workers' data differ
        reply = traces[0][f"{s}/exchange/0/reply/0"]
        mean = (first[0] + first[1]) / 2
        offset = 0
        for x in plan.matrices:
            block = reply[offset : offset + x.n * x.rank].reshape(x.n, x.rank)
            np.testing.assert_allclose(block.T @ block, np.eye(x.rank), atol=1e-4)  # orthonormal columns
            raw = mean[offset : offset + x.n * x.rank].reshape(x.n, x.rank)
            # the same column space as the mean of P, column by column (Gram–Schmidt keeps the first's direction)
            first_column = raw[:, 0] / np.linalg.norm(raw[:, 0])
            np.testing.assert_allclose(block[:, 0], first_column, rtol=1e-4, atol=1e-5)
            offset += x.n * x.rank
        np.testing.assert_allclose(reply[offset:], mean[offset:], rtol=1e-6, atol=1e-7)  # 1-D tensors: the mean
        second = [t[f"{s}/exchange/1/up/0"] for t in traces]
        np.testing.assert_allclose(traces[0][f"{s}/exchange/1/reply/0"], (second[0] + second[1]) / 2, rtol=1e-6, atol=1e-7)
        for key in (f"{s}/exchange/0/reply/0", f"{s}/reply/0"):
            np.testing.assert_array_equal(traces[0][key], traces[1][key])


@pytest.mark.unit
@pytest.mark.parametrize("flag, value, message", [
    ("--rank", "5", "must be in 1..4, got 5"),
    ("--sync-every", "0", "must be at least 1, got 0"),
    ("--outer-momentum", "1", "must be in [0, 1), got 1"),
])
def test_the_new_options_are_range_checked(flag, value, message, capsys):
    from runtime.flags import ps_parser

    with pytest.raises(SystemExit):
        ps_parser("").parse_args([flag, value])
    assert message in capsys.readouterr().err


@pytest.mark.unit
def test_both_sides_derive_the_local_steps_from_the_options_alone():
    from runtime.methods import RunInfo, build

    method = build("localsgd", LENET.layout, {"sync_every": 4, "outer_lr": 1.0, "outer_momentum": 0.0},
                   RunInfo(workers=2, steps_per_epoch=10, epochs=2, lr=1e-3, seed=0))
    syncs = [s for s in range(20) if not method.is_local(s)]
    assert syncs == [3, 7, 9, 11, 15, 19]  # every 4th step and each epoch's last
    assert [method.next_exchange(s) for s in (0, 4, 8, 9, 16, 20)] == [3, 7, 9, 9, 19, None]
    baseline = build("baseline", LENET.layout, {}, RunInfo(2, 10, 2, 1e-3, 0))
    assert not any(baseline.is_local(s) for s in range(20)) and baseline.next_exchange(5) == 5


@pytest.mark.cluster
def test_mp2_with_a_sync_interval_exchanges_every_h_steps_and_predicts_there(runs):
    """MP² with --sync-every H: the same exchange steps as local SGD's; each is a full push (warm-up, the
    schedule's refresh windows) or a partial one (the pushed group up, the PS's prediction down), every
    worker in sync with the PS at each, and the bytes those of the exchanges alone."""
    layout = models.get("lenet5", 10, push="front+head").layout
    summary, records = _summary(runs["mp2"]), read_jsonl(runs["mp2"] / "metrics.jsonl")
    # A partial exchange pushes the pushed group and the correction's Top-k (value and int32 position) of
    # the predicted group's gradient.
    ratio = summary["method_options"]["correction_ratio"]
    assert ratio > 0
    sparse = correction_entries(layout, ratio)
    assert any(e["event"] == "switch to mp2" for e in summary["method_stats"]["online"]["events"])
    for r, n in zip(records, [_syncs(0), _syncs(1)]):
        full, partial = r["phases"].get("full", 0), r["phases"].get("partial", 0)
        assert r["phases"]["local"] == STEPS - n and full + partial == n, r["phases"]
        assert [w["steps_verified_in_sync"] for w in r["workers"]] == [n, n]
        assert r["bytes_pushed"] == 2 * (4 * T * full + (4 * layout.pushed + 8 * sparse) * partial)
    assert summary["phases"]["partial"] > 0 and summary["test_acc_by_epoch"][-1] > 0.3
    # The schedule counted exchanges: 3 warm-up snapshots, one per full exchange, before the first round.
    assert summary["method_stats"]["steps"]["full_by_reason"]["warm-up"] == 3


@pytest.mark.unit
def test_mp2_exchanges_where_local_sgd_does_and_its_schedule_counts_exchanges():
    from runtime.methods.base import RunInfo
    from runtime.methods.localsgd import LocalSGD, LocalSGDOptions
    from runtime.methods.mp2 import MP2
    from runtime.methods.mp2_options import MP2Options

    run_info = RunInfo(workers=4, steps_per_epoch=120, epochs=2, lr=1e-3, seed=0)
    layout = models.get("lenet5", 10, push="front+head").layout
    mp2 = MP2(layout, MP2Options(sync_every=4), run_info)
    local = LocalSGD(layout, LocalSGDOptions(sync_every=4), run_info)
    assert [s for s in range(240) if not mp2.is_local(s)] == [s for s in range(240) if not local.is_local(s)]
    assert [mp2._exchange[s] for s in (3, 7, 119, 123)] == [0, 1, 29, 30]
    # The derived defaults scale with exchanges per epoch (30 here): warm-up snapshots 30 x 30 / 120.
    assert mp2.opts.warmup_snapshots == 7 and MP2(layout, MP2Options(), run_info).opts.warmup_snapshots == 30
    assert not any(MP2(layout, MP2Options(), run_info).is_local(s) for s in range(240))
