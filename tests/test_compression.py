"""Top-k with error feedback and DGC: what is sent, the state they keep, in graph mode as the
runtime runs them (a compat.v1 Session in its own graph) and eagerly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from compression import DGC, TopK, densify, warmup_ratio

pytestmark = pytest.mark.unit


class GraphRun:
    """A compressor built in its own graph, one session.run per step, as the product runs it."""

    def __init__(self, make, shapes):
        self.shapes = shapes
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.compressor = make(shapes)
            self.grads = [tf.compat.v1.placeholder(tf.float32, s) for s in shapes]
            out = self.compressor.compress(self.grads)
            mask = getattr(self.compressor, "dense_mask", [False] * len(shapes))
            self.fetches = {
                "values": out.values,
                "indices": out.indices,
                "dense": out.dense,
                "flat": densify(out.values, out.indices, out.dense, shapes, mask),
                "update": out.update,
            }
            self.session = tf.compat.v1.Session()
            extra = [self.compressor.ratio] if isinstance(self.compressor, DGC) else []
            self.session.run(tf.compat.v1.variables_initializer(self.compressor.variables + extra))
        self.graph.finalize()  # steps and set_ratio add nothing to the graph

    def step(self, grads):
        return self.session.run(self.fetches, dict(zip(self.grads, grads)))

    def state(self):
        return self.session.run(self.compressor.variables)


class EagerRun:
    def __init__(self, make, shapes):
        self.shapes, self.compressor = shapes, make(shapes)

    def step(self, grads):
        out = self.compressor.compress([tf.constant(g) for g in grads])
        assert out.update is None  # eagerly, the state is updated by compress itself
        mask = getattr(self.compressor, "dense_mask", [False] * len(self.shapes))
        flat = densify(out.values, out.indices, out.dense, self.shapes, mask)
        return {name: t.numpy() for name, t in [("values", out.values), ("indices", out.indices), ("dense", out.dense), ("flat", flat)]}

    def state(self):
        return [v.numpy() for v in self.compressor.variables]


def _random_grads(rng, shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _flat(tensors):
    return np.concatenate([np.reshape(t, -1) for t in tensors])


# --- Top-k -----------------------------------------------------------------------------------

SHAPES = [(40, 50), (7,), (3, 3, 4, 8), (1,)]


def test_topk_sends_exactly_the_largest_entries_of_gradient_plus_residual():
    rng = np.random.default_rng(0)
    run = GraphRun(lambda s: TopK(s, ratio=0.05), SHAPES)
    run.step(_random_grads(rng, SHAPES))  # leaves a residual behind
    residual = run.state()
    assert np.abs(_flat(residual)).sum() > 0
    grads = _random_grads(rng, SHAPES)
    out = run.step(grads)

    expected, start = [], 0
    for g, r in zip(grads, residual):
        acc = (g + r).reshape(-1)
        k = max(1, math.floor(0.05 * acc.size))
        keep = np.zeros_like(acc)
        top = np.argsort(-np.abs(acc))[:k]
        keep[top] = acc[top]
        expected.append(keep)
        # k per tensor: exactly k indices fall inside this tensor's span
        assert np.sum((out["indices"] >= start) & (out["indices"] < start + acc.size)) == k
        start += acc.size
    assert [max(1, math.floor(0.05 * math.prod(s))) for s in SHAPES] == [100, 1, 14, 1]
    np.testing.assert_array_equal(out["flat"], np.concatenate(expected))
    assert out["values"].dtype == np.float32 and out["indices"].dtype == np.int32
    assert len(out["dense"]) == 0


@pytest.mark.parametrize("runner", [GraphRun, EagerRun], ids=["graph", "eager"])
def test_topk_error_feedback_loses_nothing(runner):
    rng = np.random.default_rng(1)
    run = runner(lambda s: TopK(s, ratio=0.02), SHAPES)
    total_grads = np.zeros(sum(math.prod(s) for s in SHAPES), np.float64)
    total_sent = np.zeros_like(total_grads)
    for _ in range(6):
        grads = _random_grads(rng, SHAPES)
        total_grads += _flat(grads)
        total_sent += run.step(grads)["flat"]
        np.testing.assert_allclose(total_sent + _flat(run.state()), total_grads, atol=1e-5)
    assert np.abs(_flat(run.state())).max() > 0  # there was something held back to account for


def test_topk_rejects_a_ratio_outside_0_1():
    with pytest.raises(ValueError, match="ratio"):
        TopK([(3, 3)], ratio=0.0)


# --- DGC: momentum correction, masking, dense tensors ----------------------------------------


@pytest.mark.parametrize("runner", [GraphRun, EagerRun], ids=["graph", "eager"])
def test_dgc_momentum_correction_and_masking_by_hand(runner):
    # A bias (3,) first, then a 2x5 weight: 10 values at ratio 0.1 send k = 1 per step. Such a
    # small tensor is sampled whole, so the one sent is its largest |v|.
    shapes = [(3,), (2, 5)]
    run = runner(lambda s: DGC(s, momentum=0.5, ratio=0.1), shapes)
    assert run.compressor.dense_mask == [True, False]
    bias = np.array([1.0, -1.0, 2.0], np.float32)
    weight = np.array([[3.0, 2.0, 1.0, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    # step 1: u = v = g; send v[0] = 3;        u, v <- [0, 2, 1, ...]
    # step 2: u = [3, 3, 1.5]; v = [3, 5, 2.5]; send v[1] = 5; u <- [3, 0, 1.5], v <- [3, 0, 2.5]
    # step 3: u = [4.5, 2, 1.75]; v = [7.5, 2, 4.25]; send v[0] = 7.5
    # The bias keeps plain momentum, sent whole: u = g, 1.5 g, 1.75 g.
    expected = [(3, 3.0, 1.0), (4, 5.0, 1.5), (3, 7.5, 1.75)]
    for index, value, bias_scale in expected:
        out = run.step([bias, weight])
        assert out["indices"].tolist() == [index]  # global flat index: the bias's 3 come first
        np.testing.assert_allclose(out["values"], [value])
        np.testing.assert_allclose(out["dense"], bias_scale * bias)
    u_bias, u_weight, v_weight = run.state()
    np.testing.assert_allclose(u_weight.reshape(-1)[:3], [0, 2, 1.75])
    np.testing.assert_allclose(v_weight.reshape(-1)[:3], [0, 2, 4.25])
    np.testing.assert_allclose(u_bias, 1.75 * bias)
    assert len(run.compressor.variables) == 3  # u for the bias; u and v for the weight


def test_dgc_one_dimensional_tensors_go_dense_in_place():
    rng = np.random.default_rng(2)
    shapes = [(30, 40), (40,), (5, 5, 2, 4), (4,)]
    run = GraphRun(lambda s: DGC(s, momentum=0.0, ratio=0.01), shapes)
    grads = _random_grads(rng, shapes)
    out = run.step(grads)
    np.testing.assert_array_equal(out["dense"], np.concatenate([grads[1], grads[3]]))
    flat = out["flat"]
    np.testing.assert_array_equal(flat[1200:1240], grads[1])  # the bias sits at its own offset
    np.testing.assert_array_equal(flat[-4:], grads[3])
    assert np.all((out["indices"] < 1200) | ((out["indices"] >= 1240) & (out["indices"] < 1440)))


def test_dgc_threshold_selects_about_k_and_only_the_largest():
    rng = np.random.default_rng(3)
    run = GraphRun(lambda s: DGC(s, momentum=0.0), [(100, 1000)])  # default ratio 0.001: k = 100
    k = 100
    for trial in range(8):
        grad = (rng.standard_normal((100, 1000)) * rng.exponential(1.0, (100, 1000))).astype(np.float32)
        run.session.run([v.initializer for v in run.compressor.variables])  # fresh state each trial
        out = run.step([grad])
        selected = out["indices"]
        assert 0.8 * k <= len(selected) <= 1.3 * k or len(selected) == k, (trial, len(selected))
        assert len(set(selected.tolist())) == len(selected)
        np.testing.assert_array_equal(out["values"], grad.reshape(-1)[selected])
        rest = np.delete(np.abs(grad.reshape(-1)), selected)
        assert np.abs(out["values"]).min() >= rest.max()


def test_dgc_exact_top_k_when_too_many_pass():
    # 100,000 values at ratio 0.001 (k = 100) are sampled at stride 49, the threshold being the
    # 3rd largest sample. All ones but 48 larger entries in a row: no sample holds two of them, so
    # the threshold is 1, everything passes, and the exact top-k of those is sent: the 48, then ones.
    grad = np.ones((100, 1000), np.float32)
    grad.reshape(-1)[:48] = np.arange(2, 50, dtype=np.float32)
    run = GraphRun(lambda s: DGC(s, momentum=0.0), [(100, 1000)])
    for _ in range(3):
        run.session.run([v.initializer for v in run.compressor.variables])
        out = run.step([grad])
        assert len(out["indices"]) == 100
        assert set(range(48)) <= set(out["indices"].tolist())
        np.testing.assert_array_equal(np.sort(out["values"]), np.r_[np.ones(52), np.arange(2, 50)])


def test_dgc_ratio_is_set_per_step_without_rebuilding():
    rng = np.random.default_rng(4)
    shapes = [(200, 50)]
    run = GraphRun(lambda s: DGC(s, momentum=0.0, ratio=0.1), shapes)
    counts = []
    for ratio in (0.1, 0.01):
        run.compressor.set_ratio(ratio, run.session)  # the graph is finalized: nothing is added
        run.session.run([v.initializer for v in run.compressor.variables])
        counts.append(len(run.step(_random_grads(rng, shapes))["indices"]))
    assert 800 <= counts[0] <= 1300 and 80 <= counts[1] <= 130
    with pytest.raises(ValueError, match="ratio"):
        run.compressor.set_ratio(1.5, run.session)


def test_dgc_rejects_bad_settings():
    for bad in (dict(momentum=1.0), dict(clip_norm=-1.0), dict(workers=0), dict(sample_fraction=0.0), dict(ratio=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DGC([(3, 3)], **bad)


# --- DGC: local gradient clipping -------------------------------------------------------------


def test_dgc_clipping_scales_to_threshold_over_sqrt_workers():
    bias = np.array([6.0, 8.0, 0.0], np.float32)  # global norm 10 with the zero weight
    weight = np.zeros((2, 2), np.float32)
    shapes = [(3,), (2, 2)]
    clipped = GraphRun(lambda s: DGC(s, momentum=0.0, clip_norm=4.0, workers=4, ratio=1.0), shapes)
    np.testing.assert_allclose(clipped.step([bias, weight])["dense"], [1.2, 1.6, 0.0], rtol=1e-6)  # norm 4/sqrt(4)
    unclipped = GraphRun(lambda s: DGC(s, momentum=0.0, clip_norm=0.0, workers=4), shapes)
    np.testing.assert_array_equal(unclipped.step([bias, weight])["dense"], bias)
    loose = GraphRun(lambda s: DGC(s, momentum=0.0, clip_norm=25.0, workers=4), shapes)  # 12.5 > 10
    np.testing.assert_allclose(loose.step([bias, weight])["dense"], bias, rtol=1e-6)


def test_dgc_clipping_uses_the_norm_of_all_tensors_together():
    dgc = DGC([(2,), (1, 2)], momentum=0.0, clip_norm=5.0, workers=1)  # eagerly
    a, b = dgc.clip([tf.constant([3.0, 0.0]), tf.constant([[0.0, 4.0]])])  # joint norm 5: untouched
    np.testing.assert_allclose(np.concatenate([a.numpy(), b.numpy().reshape(-1)]), [3, 0, 0, 4], rtol=1e-6)
    a, b = dgc.clip([tf.constant([6.0, 0.0]), tf.constant([[0.0, 8.0]])])  # joint norm 10: halved
    np.testing.assert_allclose(np.concatenate([a.numpy(), b.numpy().reshape(-1)]), [3, 0, 0, 4], rtol=1e-6)


# --- warm-up and densify ---------------------------------------------------------------------


def test_warmup_ratio_follows_the_paper():
    assert [warmup_ratio(e, 0.001, 4) for e in range(7)] == [0.25, 0.0625, 0.015625, 0.004, 0.001, 0.001, 0.001]


def test_warmup_ratio_interpolates_geometrically_elsewhere():
    np.testing.assert_allclose([warmup_ratio(e, 0.01, 1) for e in range(3)], [0.1, 0.01, 0.01])
    schedule = [warmup_ratio(e, 0.0001, 3) for e in range(4)]
    np.testing.assert_allclose(schedule, [0.1, 0.01, 0.001, 0.0001])
    assert warmup_ratio(0, 0.01, 0) == 0.01  # no warm-up
    with pytest.raises(ValueError):
        warmup_ratio(-1, 0.001, 4)
    with pytest.raises(ValueError):
        warmup_ratio(0, 0.0, 4)


def test_densify_sums_duplicates_so_payloads_can_be_added():
    shapes, mask = [(2, 2), (2,)], [False, True]
    flat = densify(
        tf.constant([1.0, 2.0, 5.0]), tf.constant([3, 0, 3]), tf.constant([7.0, 8.0]), shapes, mask
    )
    np.testing.assert_array_equal(flat.numpy(), [2, 0, 0, 6, 7, 8])


def test_dgc_threshold_sample_is_a_function_of_seed_tensor_and_step():
    """Runs repeat bit for bit (a resumed one too): the sample's offset depends on nothing else."""
    from compression.dgc import _strided_sample

    magnitude = tf.range(100_000, dtype=tf.float32)
    sample = lambda seed, step: _strided_sample(magnitude, tf.constant(0.001, tf.float64), 0.01,  # noqa: E731
                                                tf.constant([seed, step], tf.int64)).numpy()
    np.testing.assert_array_equal(sample(3, 7), sample(3, 7))
    starts = {int(sample(3, step)[0]) for step in range(20)}
    assert len(starts) > 5  # the offset moves from step to step: every entry gets its turn
    assert {int(sample(4, step)[0]) for step in range(20)} != starts

    dgc = DGC([(100, 1000)], momentum=0.0, seed=5, step=tf.constant(11, tf.int64))
    again = DGC([(100, 1000)], momentum=0.0, seed=5, step=tf.constant(11, tf.int64))
    grads = [tf.random.stateless_normal([100, 1000], [1, 2])]
    np.testing.assert_array_equal(dgc.compress(grads).indices[0].numpy(), again.compress(grads).indices[0].numpy())


# --- PowerSGD -------------------------------------------------------------------------------------

def _gram_schmidt(p):
    p = p.copy()
    for i in range(p.shape[1]):
        p[:, i] /= np.sqrt(np.sum(p[:, i] ** 2)) + 1e-8
        for j in range(i + 1, p.shape[1]):
            p[:, j] -= np.sum(p[:, i] * p[:, j]) * p[:, i]
    return p


class NumpyPowerSGD:
    """The reference's algorithm in its own orientation: M = [out, in·kh·kw] (n × m), float64."""

    def __init__(self, shapes, rank, queries):
        self.shapes, self.rank = shapes, rank
        self.queries = [q.astype(np.float64) for q in queries]  # the same seeded start as the graph's
        self.residuals = None  # per worker, per matrix

    def step(self, grads_per_worker):
        """One step for all workers together: (first reply, second reply, gradients per tensor)."""
        workers = len(grads_per_worker)
        if self.residuals is None:
            self.residuals = [[np.zeros((s[-1], math.prod(s[:-1]))) for s in self.shapes if len(s) >= 2] for _ in range(workers)]
        ms = [[g.reshape(-1, g.shape[-1]).T + r for g, r in zip([g for g in grads if g.ndim >= 2], residuals)]
              for grads, residuals in zip(grads_per_worker, self.residuals)]  # ms[worker][matrix]
        p_hats = [_gram_schmidt(sum(ms[w][k] @ q for w in range(workers)) / workers) for k, q in enumerate(self.queries)]
        dense = [sum(grads[i] for grads in grads_per_worker) / workers
                 for i, s in enumerate(self.shapes) if len(s) < 2]
        q_bars = [sum(ms[w][k].T @ p for w in range(workers)) / workers for k, p in enumerate(p_hats)]
        approx = [p @ q.T for p, q in zip(p_hats, q_bars)]
        self.queries = q_bars
        self.residuals = [[m - a for m, a in zip(ms[w], approx)] for w in range(workers)]  # minus the averaged reconstruction
        matrices, vectors = iter(approx), iter(dense)
        gradient = [next(matrices).T.reshape(s) if len(s) >= 2 else next(vectors) for s in self.shapes]
        first = np.concatenate([p.ravel() for p in p_hats] + [d.ravel() for d in dense])
        return first, np.concatenate([q.ravel() for q in q_bars]), gradient


POWERSGD_SHAPES = [(3, 3, 2, 4), (4,), (7, 5), (5,), (2, 6)]  # a conv kernel (HWIO), dense layers, biases


@pytest.mark.parametrize("rank", [1, 3])
def test_powersgd_matches_a_numpy_reference_over_steps(rank):
    """Three workers, three steps: payloads, replies, the decompressed gradient, residuals and the warm start."""
    from compression.powersgd import Plan, PowerSGD, initial_queries

    shapes, workers = POWERSGD_SHAPES, 3
    plan = Plan(shapes, rank)
    # (2, 6) is a matrix of n = 6, m = 2: rank 3 is capped at 2.
    assert [x.rank for x in plan.matrices] == [min(rank, 4), min(rank, 5), min(rank, 2)]
    reference = NumpyPowerSGD(shapes, rank, initial_queries(plan, seed=7))
    graph = tf.Graph()
    with graph.as_default():
        compressors = [PowerSGD(shapes, rank, seed=7) for _ in range(workers)]
        grads = [[tf.compat.v1.placeholder(tf.float32, s) for s in shapes] for _ in range(workers)]
        reply = tf.compat.v1.placeholder(tf.float32, [None])
        firsts = [c.first_payload(g) for c, g in zip(compressors, grads)]
        ups = tf.compat.v1.placeholder(tf.float32, [workers, None])
        orthonormal = plan.orthonormalise(tf.reduce_mean(ups, 0))
        seconds = [c.second_payload(reply) for c in compressors]
        finished = [c.finish(reply) for c in compressors]
        kept = tf.compat.v1.placeholder(tf.float32, [None])
        ps_gradient = plan.decompress(kept, reply)
        session = tf.compat.v1.Session()
        session.run(tf.compat.v1.variables_initializer([v for c in compressors for v in c.variables + c.scratch]))
    rng = np.random.default_rng(0)
    for _ in range(3):
        values = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(workers)]
        want_first, want_second, want_gradient = reference.step(values)
        feed = {p: v for ps, vs in zip(grads, values) for p, v in zip(ps, vs)}
        sent = session.run(firsts, feed)
        assert all(len(s) == plan.first_size for s in sent)
        first = session.run(orthonormal, {ups: np.stack(sent)})
        np.testing.assert_allclose(first, want_first, rtol=1e-4, atol=1e-5)
        sent = session.run(seconds, {reply: first})
        second = np.mean(np.stack(sent), 0)
        np.testing.assert_allclose(second, want_second, rtol=1e-4, atol=1e-4)
        out = session.run(finished, {reply: second})
        on_ps = session.run(ps_gradient, {kept: first, reply: second})
        for gradient, _ in out:  # every worker's gradient is the PS's, bit for bit
            np.testing.assert_array_equal(gradient, on_ps)
        np.testing.assert_allclose(on_ps, np.concatenate([g.ravel() for g in want_gradient]), rtol=1e-4, atol=1e-4)
        for compressor, wanted in zip(compressors, reference.residuals):
            for got, want in zip(session.run(compressor.residuals), wanted):  # stored as Mᵀ ([m, n])
                np.testing.assert_allclose(got, want.T, rtol=1e-3, atol=1e-4)
        for got, want in zip(session.run(compressors[1].queries), reference.queries):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # warm start: the averaged Q


def test_powersgd_queries_start_alike_on_every_worker_and_apart_per_seed():
    from compression.powersgd import Plan, initial_queries

    plan = Plan(POWERSGD_SHAPES, 2)
    a, b, c = initial_queries(plan, 0), initial_queries(plan, 0), initial_queries(plan, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], c[0])
    assert [q.shape for q in a] == [(18, 2), (7, 2), (2, 2)]
