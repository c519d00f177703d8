"""SparseLoCo (--method sparseloco): its update by hand (the mean over the workers that sent a coordinate, the
error buffer keeping what was not sent), the first sync's payload as the Top-k of the pseudo-gradient from the
PS's model, every side equal after every sync, its bytes, and its resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import models
from compression import sparseloco as sl
from runtime.methods import RunInfo, build
from tests.cluster import SMALL, read_jsonl, run, run_together
from tests.test_sparseloco_compressor import ref_top_k

LENET = models.get("lenet5", 10)
T = LENET.layout.total
STEPS, H = 20, 4  # synthetic's 2000 training images, 2 workers of 50; a sync every 4th step and at epoch ends
CONTROL = 16


def _method(workers: int = 2, **opts):
    return build("sparseloco", LENET.layout, {"sync_every": H, "outer_lr": 1.0, "error_decay": 0.95,
                                             "chunk_top_k": sl.TOP_K, **opts}, RunInfo(workers, STEPS, 2, 1e-3, 0))


def _tensors(vector: np.ndarray) -> list[tf.Tensor]:
    parts = LENET.layout.unflatten(vector)
    return [tf.constant(parts[p.name]) for p in LENET.layout.params]


@pytest.mark.unit
def test_the_update_is_the_mean_over_the_workers_that_sent_each_coordinate():
    method = _method(outer_lr=0.5)
    rng = np.random.default_rng(0)
    errors = [rng.standard_normal(T).astype(np.float32) for _ in range(2)]
    anchor = rng.standard_normal(T).astype(np.float32)
    payloads, sents = zip(*(method.codec.encode(_tensors(e)) for e in errors))
    new = method._step(tf.constant(anchor), [list(p) for p in payloads]).numpy()
    sent = [np.concatenate([s.numpy().reshape(-1) for s in ss]) for ss in sents]
    # What each worker sent, as every side reads it: the Top-k positions of its buffer, values in 2 bits.
    for e, s in zip(errors, sent):
        chosen = s != 0
        assert 0.02 < chosen.mean() < 0.06  # 3.125 % of each full chunk; small tensors keep at least one
    count = (sent[0] != 0).astype(np.float32) + (sent[1] != 0)
    expected = anchor - np.float32(0.5) * np.where(count > 0, (sent[0] + sent[1]) / np.maximum(count, 1), 0)
    np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-6)
    both = (sent[0] != 0) & (sent[1] != 0)
    only = (sent[0] != 0) & (sent[1] == 0)
    assert both.any() and only.any()  # a coordinate one worker sent moves by its whole value, not half of it
    np.testing.assert_allclose(anchor[only] - new[only], 0.5 * sent[0][only], rtol=1e-5)
    assert method.payload_bytes() == sum(int(np.size(p)) * (4 if p.dtype == tf.float32 else 1) for p in payloads[0])


@pytest.mark.unit
def test_a_chunk_of_more_than_4096_entries_is_refused():
    with pytest.raises(ValueError, match="--chunk-top-k 5000"):
        _method(chunk_top_k=5000)


@pytest.mark.cluster
def test_sparseloco_keeps_every_side_equal_counts_its_bytes_resumes_exactly_and_sends_the_top_k_of_its_pseudo_gradient(tmp_path):
    common = ["--method", "sparseloco", "--sync-every", str(H), *SMALL, "--verify-sync", "--mixup", "0"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    done = run_together(("mp2_local.py", "--workers", "2", *common, "--epochs", "2", "--trace-steps", str(H),
                         "--out", str(whole)),
                        ("mp2_local.py", "--workers", "2", *common, "--epochs", "1", "--out", str(split)))
    assert all(d.returncode == 0 for d in done), "".join(d.stdout[-2000:] for d in done)
    again = run("mp2_local.py", "--workers", "2", *common, "--epochs", "2", "--resume", "--out", str(split))
    assert again.returncode == 0 and "resuming after epoch 1" in again.stdout, again.stdout[-3000:]

    summary = json.loads((whole / "summary.json").read_text())
    payload = _method().payload_bytes()
    syncs = [sum(1 for s in range(e * STEPS, (e + 1) * STEPS) if (s + 1) % H == 0 or (s + 1) % STEPS == 0)
             for e in range(2)]
    for record, n in zip(read_jsonl(whole / "metrics.jsonl"), syncs):
        assert [w["steps_verified_in_sync"] for w in record["workers"]] == [n, n]
        assert record["bytes_pushed"] == 2 * n * payload
        assert record["bytes_pulled"] == 2 * n * (2 * payload + CONTROL)  # every worker's payload, relayed
    assert payload < 0.02 * 4 * T  # under 2 % of a dense push
    assert summary["ps_devices"][0] == "CPU"  # every process names the devices it saw (GPUs after it, where present)
    np.testing.assert_array_equal(np.load(whole / "checkpoint.npz")["model"], np.load(split / "checkpoint.npz")["model"])
    resumed = json.loads((split / "summary.json").read_text())
    for key in ("test_acc_by_epoch", "val_acc_by_epoch", "best_val_epoch", "test_acc_at_best_val"):
        assert resumed[key] == summary[key], key  # the validation history survives the resume, and selects alike
    assert len(summary["val_acc_by_epoch"]) == 2 and None not in summary["val_acc_by_epoch"]

    # The first sync (step H-1): each worker's buffer was empty, so it sends the chunk-wise Top-k of the PS's
    # starting model minus its own trained model; the reply is both payloads in worker order.
    traces = [np.load(whole / f"trace-worker-{i}.npz") for i in range(2)]
    start = LENET.init_vector(0).astype(np.float32)
    s = H - 1
    plans = _method().plans
    for t in traces:
        delta = LENET.layout.unflatten(start - t[f"{s}/trained"])
        at = 0
        for n, (spec, plan) in enumerate(zip(LENET.layout.params, plans)):  # each tensor's indices packed alone
            packed = t[f"{s}/up/0"][at:at + sl.index_bytes(plan.entries)]
            at += sl.index_bytes(plan.entries)
            indices, values = ref_top_k(delta[spec.name])
            np.testing.assert_array_equal(sl.unpack_indices(tf.constant(packed), plan.entries).numpy(), indices,
                                          err_msg=spec.name)
            # The quantizer's shift is the mean of the values sent: the sign of the pseudo-gradient shows.
            np.testing.assert_allclose(t[f"{s}/up/2"][n * sl.PARAMS], values.mean(), rtol=1e-3, atol=1e-7)
        assert at == len(t[f"{s}/up/0"])
    for k in range(3):
        np.testing.assert_array_equal(traces[0][f"{s}/reply/{k}"],
                                      np.concatenate([traces[0][f"{s}/up/{k}"], traces[1][f"{s}/up/{k}"]]))


@pytest.mark.unit
def test_error_feedback_keeps_what_was_sent_plus_what_is_left_equal_to_the_decayed_pseudo_gradients():
    """Two syncs on one worker's graph: after each, sent + the buffer left = β·(buffer before) + α·Δ, with
    Δ = the anchor (the PS's model at admission) minus the model as trained."""
    from runtime.methods.local_model import LocalModel
    from runtime.methods.base import WorkerSide

    beta, alpha = 0.95, 0.5
    method = _method(outer_lr=alpha, error_decay=beta)
    graph = tf.Graph()
    with graph.as_default():
        local = LocalModel(LENET, "/cpu:0")
        h, w, c = LENET.input_shape
        rng = np.random.default_rng(1)
        images = tf.constant(rng.random((8, h, w, c), dtype=np.float32))
        labels = tf.one_hot(rng.integers(0, 10, 8), 10)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=LENET.forward(local.vars, images)))
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
        side = WorkerSide(local, loss, tf.constant(0.01), step, "/cpu:0")
        join = method.build_join(side)
        phase = method.build_worker(side)[0]
        payload = [tf.compat.v1.placeholder(d) for d in method.up_dtypes]
        decoded = method.codec.decode(payload)
        start = tf.constant(LENET.init_vector(0).astype(np.float32))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(local.assign(start))
            session.run(join)
            anchor = session.run(local.vector())
            before = np.zeros(T, np.float32)
            for _ in range(2):
                up = session.run(phase.up)
                trained, left = session.run([local.vector(), method._error])
                sent = np.concatenate([v.reshape(-1) for v, _ in session.run(decoded, dict(zip(payload, up)))])
                expected = beta * before + alpha * (anchor - trained)
                np.testing.assert_allclose(sent + left, expected, rtol=1e-5, atol=1e-7)
                assert np.count_nonzero(sent) > 0 and np.count_nonzero(left) > np.count_nonzero(sent)
                before = left
