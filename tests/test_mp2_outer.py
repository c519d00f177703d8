"""MP² inside DiLoCo (`--method mp2 --sync-every H --outer-lr --outer-momentum`): the PS takes DiLoCo's outer
Nesterov step towards the model it assembles at each exchange. Checked by hand on the control
(`--prediction hold`, whose assembled model is the averaged pushed group beside the held predicted group, so
the predicted group must not move at all), every side equal after every exchange (--verify-sync)."""
from __future__ import annotations

import numpy as np
import pytest

import models
from runtime.flags import method_options, ps_parser
from runtime.methods import RunInfo, build
from tests.cluster import SMALL, read_jsonl, run

LENET = models.get("lenet5", 10)
T = LENET.layout.total


@pytest.mark.cluster
def test_the_outer_step_is_taken_towards_the_assembled_model(tmp_path):
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--prediction", "hold", "--sync-every", "2",
               "--outer-lr", "0.7", "--outer-momentum", "0.9", "--epochs", "1", "--trace-steps", "6", "--verify-sync",
               "--out", str(tmp_path), *SMALL)
    assert done.returncode == 0, done.stdout[-3000:]
    assert all(w["steps_verified_in_sync"] > 0 for w in read_jsonl(tmp_path / "metrics.jsonl")[0]["workers"])
    traces = [np.load(tmp_path / f"trace-worker-{i}.npz") for i in (0, 1)]
    theta, velocity = LENET.init_vector(0).astype(np.float32), np.zeros(T, np.float32)
    lr, mu = np.float32(0.7), np.float32(0.9)
    synced = 0
    for s in (1, 3, 5):  # the exchanges (every 2nd step); the steps between are local
        ups = [t[f"{s}/up/0"] for t in traces]
        average = (ups[0] + ups[1]) / np.float32(2)
        held = LENET.layout.split(theta)[1]
        target = average if len(average) == T else LENET.layout.join(average, held)
        g = theta - target
        velocity = mu * velocity + g
        new = theta - lr * (g + mu * velocity)
        reply = traces[0][f"{s}/reply/0"]
        np.testing.assert_allclose(reply, new, rtol=1e-5, atol=1e-6)
        if len(average) < T:  # a partial exchange: the held group does not move
            np.testing.assert_array_equal(LENET.layout.split(reply)[1], held)
            synced += 1
        theta = reply.astype(np.float32)
    assert synced > 0
    state = np.load(tmp_path / "checkpoint.npz")
    assert any(k.endswith("outer_velocity") for k in state.files)  # PS state, saved for a resume


@pytest.mark.unit
def test_the_outer_step_needs_the_full_broadcast():
    args = ps_parser("").parse_args(["--method", "mp2", "--broadcast", "subset", "--outer-lr", "0.7"])
    with pytest.raises(ValueError, match="--broadcast full"):
        build("mp2", LENET.layout, method_options(args), RunInfo(2, 20, 1, 1e-3, 0)).opts.check()
