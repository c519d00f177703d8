"""SparseLoCo's compressor against a numpy reference written from its specification: chunks, Top-k with ties,
short and all-zero chunks, the 2-bit quantizer, the packing and its bytes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from compression import sparseloco as sl

pytestmark = pytest.mark.unit


def ref_divisor(n: int) -> int:
    return n if n < 64 else max(d for d in range(1, 65) if n % d == 0)


def ref_chunks(x: np.ndarray) -> tuple[np.ndarray, int]:
    """[chunks, len] tiles of x seen as a matrix, and k."""
    m = x.reshape(1, -1) if x.ndim == 1 else x.reshape(-1, x.shape[-1])
    h = 1 if x.ndim == 1 else ref_divisor(m.shape[0])
    w = ref_divisor(m.shape[1])
    tiles = [m[r:r + h, c:c + w].reshape(-1) for r in range(0, m.shape[0], h) for c in range(0, m.shape[1], w)]
    k = min(h * w, max(1, round(h * w * 128 / 4096)))
    return np.stack(tiles), k


def ref_top_k(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chunks, k = ref_chunks(x)
    idx = [np.lexsort((np.arange(len(c)), -np.abs(c)))[:k] for c in chunks]  # by |x| down, lower index first
    return np.concatenate(idx), np.concatenate([c[i] for c, i in zip(chunks, idx)])


def ref_quantize(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v.astype(np.float64)
    shift = v.mean()
    c = v - shift
    sigma = np.linalg.norm(c) / math.sqrt(max(len(v) - 1, 1))
    scale = 6 * sigma / 4
    bins = np.full(len(v), 2) if scale == 0 else np.clip(np.round(c / scale + 2), 0, 3).astype(int)
    means = [c[bins == b].mean() if (bins == b).any() else 0.0 for b in range(4)]
    return bins, np.array([shift, *means])


SHAPES = [(5, 5, 1, 6), (400, 120), (130,), (67,), (10,), (3, 3, 64, 128), (71, 64)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_top_k_per_chunk_matches_the_reference_and_scatters_back(shape):
    rng = np.random.default_rng(len(shape) * 1000 + shape[0])
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[: x.size // 3] = np.round(x.reshape(-1)[: x.size // 3])  # many equal magnitudes: ties
    plan = sl.ChunkPlan.of(shape)
    indices, values = (t.numpy() for t in sl.top_k(tf.constant(x), plan))
    ref_idx, ref_val = ref_top_k(x)
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_array_equal(values, ref_val)
    assert len(indices) == plan.entries
    dense = sl.scatter(tf.constant(indices), tf.constant(values), plan).numpy()
    kept = dense != 0
    np.testing.assert_array_equal(dense[kept], x[kept])  # what is kept is exact, in place
    assert kept.sum() == np.count_nonzero(ref_val)


def test_the_chunk_plan_follows_the_reference_sizes():
    assert sl.ChunkPlan.of((4096, 4096)).chunk_len == 4096 and sl.ChunkPlan.of((4096, 4096)).k == 128
    assert (sl.ChunkPlan.of((130,)).chunk_len, sl.ChunkPlan.of((130,)).k) == (26, 1)  # 130 = 5 x 26
    assert (sl.ChunkPlan.of((67,)).chunk_len, sl.ChunkPlan.of((67,)).chunks) == (1, 67)  # a prime above 64: dense
    assert sl.ChunkPlan.of((5, 5, 1, 6)).chunk_len == 150 and sl.ChunkPlan.of((5, 5, 1, 6)).k == 5
    assert sl.ChunkPlan.of((64,)).k == 2  # a 1-D chunk of 64 keeps 2, the same density


def test_a_short_chunk_and_an_all_zero_chunk():
    x = np.zeros((10,), np.float32)  # one chunk of 10 (shorter than 64), all zeros
    plan = sl.ChunkPlan.of(x.shape)
    indices, values = (t.numpy() for t in sl.top_k(tf.constant(x), plan))
    assert indices.tolist() == [0] and values.tolist() == [0.0]  # k = 1, the lowest index of equals
    bins, params = sl.quantize(tf.constant(values))
    assert sl.dequantize(bins, params).numpy().tolist() == [0.0]


@pytest.mark.parametrize("n", [1, 2, 7, 500, 4096])
def test_the_2_bit_quantizer_matches_the_reference(n):
    rng = np.random.default_rng(n)
    v = (rng.standard_normal(n) * 0.01 + 0.002).astype(np.float32)
    bins, params = (t.numpy() for t in sl.quantize(tf.constant(v)))
    ref_bins, ref_params = ref_quantize(v)
    np.testing.assert_array_equal(bins, ref_bins)
    np.testing.assert_allclose(params, ref_params, rtol=1e-4, atol=1e-7)
    back = sl.dequantize(tf.constant(bins), tf.constant(params)).numpy()
    if n == 1:
        np.testing.assert_array_equal(back, v)  # one value: its own bin, exact
    else:
        assert len(set(back.tolist())) <= 4 and abs(back.mean() - v.mean()) < 1e-6  # bin means keep the mean


def test_equal_values_come_back_exactly():
    v = np.full(9, 0.25, np.float32)
    bins, params = sl.quantize(tf.constant(v))
    np.testing.assert_array_equal(sl.dequantize(bins, params).numpy(), v)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 11, 128])
def test_packing_round_trips_and_takes_the_bytes_it_says(n):
    rng = np.random.default_rng(n)
    bins = rng.integers(0, 4, n).astype(np.uint8)
    idx = rng.integers(0, 4096, n).astype(np.int32)
    pb, pi = sl.pack_bins(tf.constant(bins)), sl.pack_indices(tf.constant(idx))
    assert pb.shape[0] == sl.bin_bytes(n) and pi.shape[0] == sl.index_bytes(n)
    np.testing.assert_array_equal(sl.unpack_bins(pb, n).numpy(), bins)
    np.testing.assert_array_equal(sl.unpack_indices(pi, n).numpy(), idx)
    if n >= 2:  # the layout itself: the first index's low byte, then its high nibble under the second's low one
        raw = pi.numpy()
        assert raw[0] == idx[0] & 0xFF and raw[1] == (idx[0] >> 8) | ((idx[1] & 0xF) << 4) and raw[2] == idx[1] >> 4
    if n >= 4:
        assert pb.numpy()[0] == bins[0] | bins[1] << 2 | bins[2] << 4 | bins[3] << 6


def test_a_models_density_is_a_few_percent():
    import models

    shapes = [p.shape for p in models.get("lenet5", 10).layout.params]
    assert 0.02 < sl.densities(shapes) < 0.06
