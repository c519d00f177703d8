"""Streaming DiLoCo (--method streaming): the 4-bit codec, the staggered schedule, the outer step on one fragment
by hand, and a cluster run whose synced fragment is equal on every side after every sync, bytes exact."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import models
from runtime.methods import RunInfo, build
from runtime.methods.base import PSSide
from runtime.methods.streaming import dequantize, pack, quantize, unpack
from tests.cluster import SMALL, read_jsonl, run

LENET = models.get("lenet5", 10)
T = LENET.layout.total
STEPS, H, F = 20, 8, 2  # synthetic's 2000 training images, 2 workers of 50
CONTROL = 16


def _method(**opts):
    return build("streaming", LENET.layout, {"sync_every": H, "fragments": F, **opts}, RunInfo(2, STEPS, 2, 1e-3, 0))


@pytest.mark.unit
def test_e3m0_keeps_powers_of_two_the_sign_and_zero_and_rounds_in_log_scale():
    top = 3.0
    x = np.array([3.0, -1.5, 0.75, -3 / 64, 3 / 64 * 0.75, 3 / 64 * 0.7, 0.0, 2.4, -1.9], np.float32)
    codes, got_top = quantize(tf.constant(x))
    back = dequantize(codes, got_top).numpy()
    assert got_top.numpy() == top
    np.testing.assert_array_equal(back[:4], x[:4])  # powers of two of the largest: exact, signs kept
    assert back[4] == 3 / 64 and back[5] == 0.0 and back[6] == 0.0  # 2^-6.4 of the largest: 2^-6; 2^-6.5 and below: 0
    assert back[7] == 3.0 and back[8] == -1.5  # 2.4 is nearer 3 than 1.5 in log scale; 1.9 nearer 1.5
    tiny = quantize(tf.constant([1.0, 2 ** -6.6], tf.float32))
    assert dequantize(*tiny).numpy()[1] == 0.0  # below 2^-6.5 of the largest: zero
    assert dequantize(*quantize(tf.zeros([3]))).numpy().tolist() == [0.0, 0.0, 0.0]
    codes = tf.constant([1, 15, 0, 9, 7], tf.uint8)
    packed = pack(codes)
    assert packed.shape == [3] and unpack(packed, 5).numpy().tolist() == [1, 15, 0, 9, 7]


@pytest.mark.unit
def test_fragments_are_strided_over_layers_and_synced_in_turn_each_every_h_steps():
    method = _method()
    assert [sorted({p.layer for p in m}) for m in method.members] == [["conv1", "fc1", "fc3"], ["conv2", "fc2"]]
    phases = {s: (None if method.is_local(s) else method.phase_name(method.next_phase(s))) for s in range(2 * STEPS)}
    # Fragment 0 at 4, 12, 28, 36 steps done; fragment 1 at 8, 16, 24, 32; every fragment at the epochs' ends.
    assert {s + 1: p for s, p in phases.items() if p} == {4: "fragment0", 8: "fragment1", 12: "fragment0",
                                                          16: "fragment1", 20: "all", 24: "fragment1",
                                                          28: "fragment0", 32: "fragment1", 36: "fragment0", 40: "all"}
    with pytest.raises(ValueError, match="lenet5 has 5 layers"):
        _method(fragments=6)
    with pytest.raises(ValueError, match="--fragments 3 > --sync-every 2"):
        _method(fragments=3, sync_every=2)


@pytest.mark.unit
def test_the_ps_takes_the_outer_step_on_the_synced_fragment_only():
    method = _method(outer_lr=0.5, outer_momentum=0.9, outer_bits=32)
    rng = np.random.default_rng(0)
    start = rng.standard_normal(T).astype(np.float32)
    deltas = [rng.standard_normal(T).astype(np.float32) for _ in range(2)]
    model = tf.Variable(start)
    # Eagerly, building a phase runs it once; phases are built in order, each gathering its fragment's payloads.
    gathered = iter([[method._encode(method._slice(tf.constant(d), phase), phase) for d in deltas]
                     for phase in method.phase_names])
    seen = []  # the PS's model as each phase starts

    def gather():
        seen.append(model.numpy().copy())
        return next(gathered)

    phases = method.build_ps(PSSide(LENET.layout, model, 2, tf.constant(0, tf.int64), "/cpu:0", gather))
    # After fragment 0's sync, its coordinates moved by DiLoCo's first Nesterov step (v = g): θ − lr·(g + μ·g); the
    # others are as they were.
    mine = np.zeros(T, bool)
    for p in method.members[0]:
        mine[slice(*LENET.layout.offset(p.name))] = True
    g = (deltas[0][mine] + deltas[1][mine]) / 2
    np.testing.assert_allclose(phases[0].reply[0].numpy(), start[mine] - 0.5 * (g + 0.9 * g), rtol=1e-5, atol=1e-6)
    after_first = seen[1]
    np.testing.assert_array_equal(after_first[~mine], start[~mine])
    np.testing.assert_array_equal(after_first[mine], phases[0].reply[0].numpy())
    assert method.payload_bytes(0) == 4 * mine.sum()
    assert _method().payload_bytes(0) == (mine.sum() + 1) // 2 + 4 * len(method.members[0])  # 4 bits a value


@pytest.mark.cluster
def test_streaming_keeps_the_synced_fragment_equal_on_every_side_and_counts_its_bytes(tmp_path):
    out = tmp_path / "run"
    done = run("mp2_local.py", "--workers", "2", "--method", "streaming", "--sync-every", str(H), "--fragments",
               str(F), *SMALL, "--verify-sync", "--mixup", "0", "--epochs", "2", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:]
    method = _method()
    for epoch, record in enumerate(read_jsonl(out / "metrics.jsonl")):
        steps = [s for s in range(epoch * STEPS, (epoch + 1) * STEPS) if not method.is_local(s)]
        phases = [method.next_phase(s) for s in steps]
        assert [w["steps_verified_in_sync"] for w in record["workers"]] == [len(steps)] * 2
        assert record["bytes_pushed"] == 2 * sum(method.payload_bytes(p) for p in phases)
        fragment_floats = [sum(q.size for q in method._params(p)) for p in phases]
        assert record["bytes_pulled"] == 2 * sum(4 * n + CONTROL for n in fragment_floats)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_options"] == {"sync_every": H, "fragments": F, "outer_lr": 0.35, "outer_momentum": 0.9,
                                         "outer_bits": 4}
    assert summary["bytes_pushed_total"] < 0.05 * summary["steps"] * 2 * 4 * T  # against pushing every step
