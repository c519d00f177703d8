"""The synchronous baseline (--method sync): gradients up, one Adam step on the PS, the same model on every
side after every step; its bytes, its resume, and its equality with the paper's baseline on one worker."""
from __future__ import annotations

import json

import numpy as np
import pytest

import models
from tests.cluster import SMALL, read_jsonl, run, run_together

pytestmark = pytest.mark.cluster

T = models.get("lenet5", 10).layout.total
STEPS = 20  # synthetic's 2000 training images, 2 workers of 50
CONTROL = 16  # the control word that ends every reply


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def _model(out) -> np.ndarray:
    return np.load(out / "checkpoint.npz")["model"]


def test_sync_keeps_every_side_equal_counts_its_bytes_resumes_exactly_and_steps_adam_on_the_mean(tmp_path):
    """Every side holds the PS's model after every step (--verify-sync); the bytes are the formula's; a resume
    restores the PS's Adam moments; the first step's reply is the start model after one Adam step (t = 1) on
    the mean of the two workers' traced gradients (one worker's gradient, or no step, would differ); and with
    one worker, a PS Adam step on its gradient is its own Adam step: the two methods end bit for bit alike (a
    PS at the wrong rate or on a stale model would not)."""
    from helpers.optim import BETA1, BETA2, MODEL_EPSILON

    common = ["--method", "sync", *SMALL, "--verify-sync", "--mixup", "0"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    one = {m: tmp_path / f"one-{m}" for m in ("sync", "baseline")}
    done = run_together(("mp2_local.py", "--workers", "2", *common, "--epochs", "2", "--trace-steps", "1",
                         "--out", str(whole)),
                        ("mp2_local.py", "--workers", "2", *common, "--epochs", "1", "--out", str(split)),
                        *[("mp2_local.py", "--workers", "1", *SMALL, "--method", m, "--mixup", "0", "--epochs", "1",
                           "--out", str(out)) for m, out in one.items()])
    assert all(d.returncode == 0 for d in done), "".join(d.stdout[-2000:] for d in done)
    again = run("mp2_local.py", "--workers", "2", *common, "--epochs", "2", "--resume", "--out", str(split))
    assert again.returncode == 0 and "resuming after epoch 1" in again.stdout, again.stdout[-3000:]

    summary = _summary(whole)
    assert summary["bytes_pushed_total"] == 2 * STEPS * 2 * T * 4  # epochs x steps x workers x the gradient
    assert summary["bytes_pulled_total"] == 2 * STEPS * 2 * (T * 4 + CONTROL)
    for record in read_jsonl(whole / "metrics.jsonl"):
        assert [w["steps_verified_in_sync"] for w in record["workers"]] == [STEPS, STEPS]
    np.testing.assert_array_equal(_model(whole), _model(split))  # the PS's Adam moments were saved and restored
    assert _summary(split)["test_acc_by_epoch"] == summary["test_acc_by_epoch"]
    np.testing.assert_array_equal(_model(one["sync"]), _model(one["baseline"]))

    traces = [np.load(whole / f"trace-worker-{i}.npz") for i in range(2)]
    start = traces[0]["0/trained"]
    np.testing.assert_array_equal(start, traces[1]["0/trained"])
    g0, g1 = (t["0/up/0"].astype(np.float64) for t in traces)
    assert not np.allclose(g0, g1)
    g, lr = (g0 + g1) / 2, summary["lr"]
    m, v = (1 - BETA1) * g, (1 - BETA2) * g * g
    expected = start - lr * np.sqrt(1 - BETA2) / (1 - BETA1) * m / (np.sqrt(v) + MODEL_EPSILON)
    np.testing.assert_allclose(traces[0]["0/reply/0"], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(traces[0]["0/reply/0"], traces[1]["0/reply/0"])
