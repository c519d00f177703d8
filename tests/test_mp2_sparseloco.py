"""MP² with the pushed group sent SparseLoCo's way (`--method mp2 --push-codec sparseloco`): every worker sends
the chunk-wise Top-k of its error-fed pseudo-gradient of the pushed group in 2 bits, the PS moves the pushed group
by the mean of the sent entries and fills in the rest. Checked by hand on the control (`--prediction hold`, the
rest held where it was), every side equal after every exchange (--verify-sync), the error buffers and anchors as
the formula leaves them."""
from __future__ import annotations

import numpy as np
import pytest

import models
from runtime.flags import method_options, ps_parser
from runtime.methods import RunInfo, build
from runtime.methods.sparseloco import Codec
from tests.cluster import SMALL, read_jsonl, run

LENET = models.get("lenet5", 10)
LAYOUT = LENET.layout
PUSHED = LAYOUT.group(models.PUSHED)
BETA = np.float32(0.95)
STEPS = 20  # one epoch of the small synthetic set, every step traced


def _state(path, name: str) -> np.ndarray:
    state = np.load(path)
    return state[next(k for k in state.files if k.endswith("/" + name))]


@pytest.mark.cluster
def test_the_pushed_group_moves_by_the_mean_of_the_sent_entries_and_the_error_keeps_the_rest(tmp_path):
    done = run("mp2_local.py", "--workers", "2", "--method", "mp2", "--prediction", "hold", "--push-codec", "sparseloco",
               "--sync-every", "2", "--epochs", "1", "--trace-steps", str(STEPS), "--verify-sync",
               "--out", str(tmp_path), *SMALL)
    assert done.returncode == 0, done.stdout[-3000:]
    assert all(w["steps_verified_in_sync"] == STEPS // 2 for w in read_jsonl(tmp_path / "metrics.jsonl")[0]["workers"])
    traces = [np.load(tmp_path / f"trace-worker-{i}.npz") for i in (0, 1)]
    codec = Codec([p.shape for p in PUSHED])
    theta = LENET.init_vector(0).astype(np.float32)
    held = LAYOUT.split(theta)[1]
    errors = [np.zeros(LAYOUT.pushed, np.float32) for _ in traces]
    exchanges = 0
    for s in range(STEPS):
        if int(traces[0][f"{s}/phase"]) < 0:
            continue  # a local step
        exchanges += 1
        anchor = LAYOUT.split(theta)[0]
        payloads = [[t[f"{s}/up/{k}"] for k in (1, 2, 3)] for t in traces]
        for t in traces:  # the dense slot is empty, and a payload is the codec's bytes
            assert t[f"{s}/up/0"].size == 0 and sum(t[f"{s}/up/{k}"].nbytes for k in (1, 2, 3)) == codec.wire_bytes()
        for w, (t, payload) in enumerate(zip(traces, payloads)):
            errors[w] = BETA * errors[w] + (anchor - LAYOUT.split(t[f"{s}/trained"])[0])
            sent = np.concatenate([np.asarray(values).ravel() for values, _ in codec.decode(payload)])
            errors[w] = errors[w] - sent
        expected = LAYOUT.join(anchor - np.asarray(codec.aggregate(payloads)), held)
        reply = traces[0][f"{s}/reply/0"]
        np.testing.assert_allclose(reply, expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(LAYOUT.split(reply)[1], held)  # the control holds the rest
        np.testing.assert_array_equal(reply, traces[1][f"{s}/reply/0"])
        theta = reply
    assert exchanges == STEPS // 2
    for w in (0, 1):  # the worker's saved state is what the formula left: resumable
        np.testing.assert_array_equal(_state(tmp_path / f"worker-{w}-state.npz", "push_anchor"), LAYOUT.split(theta)[0])
        np.testing.assert_allclose(_state(tmp_path / f"worker-{w}-state.npz", "push_error"), errors[w], rtol=1e-4, atol=1e-6)
    summary = read_jsonl(tmp_path / "metrics.jsonl")[0]
    assert summary["bytes_pushed"] == 2 * exchanges * codec.wire_bytes()


@pytest.mark.unit
@pytest.mark.parametrize("flags, message", [
    (["--broadcast", "subset"], "--broadcast full"),
    (["--outer-lr", "0.7"], "drop --outer-lr"),
    (["--push-codec", "zip"], "--push-codec must be dense or sparseloco"),
])
def test_the_sparse_push_refuses_what_it_cannot_do(flags, message):
    args = ps_parser("").parse_args(["--method", "mp2", "--push-codec", "sparseloco", *flags])
    with pytest.raises(ValueError, match=message):
        build("mp2", LAYOUT, method_options(args), RunInfo(2, 20, 1, 1e-3, 0)).opts.check()
