"""SparseLoCo's compressor: chunk-wise Top-k of a tensor, its values quantized to 2 bits, packed for the wire.

As the method's reference code does it (Sarfi, Thérien, Lidin, Belilovsky, 2025):

- **Chunks.** A tensor is seen as a matrix (a 1-D tensor as a row; one of more dimensions as
  [product of all but the last, the last], this project's convention for a conv kernel, as PowerSGD's).
  Each dimension n is cut into pieces of its largest divisor at most 64 (n itself below 64; no padding),
  so a chunk is a tile of up to 64 × 64 = 4,096 values (a 1-D tensor's: up to 64).
- **Top-k per chunk**, by magnitude, k = max(1, round(len · TOP_K / 4096)) (TOP_K = 128: a density of
  3.125 %), at most the chunk's length; of equal magnitudes the lower index first.
- **2-bit values, per tensor.** Over all of a tensor's selected values: shift = their mean, σ the unbiased
  deviation of the centred values, scale = 6σ / 4, bin = clamp(round(centred / scale + 2), 0, 3) (round
  half to even); each bin is sent as the mean of the centred values in it (0 for an empty bin), and a value
  comes back as its bin's mean + shift. Equal values (σ = 0) all land in bin 2, whose mean is 0: they come
  back exactly.
- **On the wire**: each index within its chunk in 12 bits (two in three bytes), each bin in 2 bits (four to a
  byte), and five float32 per tensor (shift and the four bin means). Chunk-major order makes the chunk of
  every entry implicit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

CHUNK = 64    # the reference's chunk_size: a target per dimension
TOP_K = 128   # entries per 64 x 64 chunk (density 3.125 %): the reference's 512M setting
BINS = 4      # 2 bits
RANGE_SIGMAS = 6.0
PARAMS = 1 + BINS  # float32 sent per tensor: the shift and each bin's mean


def split(n: int, target: int = CHUNK) -> int:
    """The largest divisor of n that is at most `target` (n itself when n < target)."""
    if n < target:
        return n
    return next(d for d in range(target, 0, -1) if n % d == 0)


@dataclass(frozen=True)
class ChunkPlan:
    """How one tensor is cut: a rows x cols matrix in tiles of tile_rows x tile_cols, k entries kept of each."""

    shape: tuple[int, ...]
    rows: int
    cols: int
    tile_rows: int
    tile_cols: int
    top_k: int = TOP_K  # entries kept per full CHUNK x CHUNK tile (a smaller tile keeps proportionately fewer)

    @classmethod
    def of(cls, shape: tuple[int, ...], target: int = CHUNK, top_k: int = TOP_K) -> "ChunkPlan":
        shape = tuple(int(d) for d in shape)
        rows, cols = (1, shape[0]) if len(shape) == 1 else (math.prod(shape[:-1]), shape[-1])
        return cls(shape, rows, cols, split(rows, target) if len(shape) > 1 else 1, split(cols, target), top_k)

    @property
    def chunk_len(self) -> int:
        return self.tile_rows * self.tile_cols

    @property
    def chunks(self) -> int:
        return (self.rows // self.tile_rows) * (self.cols // self.tile_cols)

    @property
    def k(self) -> int:
        return min(self.chunk_len, max(1, round(self.chunk_len * self.top_k / CHUNK ** 2)))

    @property
    def entries(self) -> int:
        return self.chunks * self.k

    def wire_bytes(self) -> int:
        """Bytes one worker sends for this tensor: packed indices and bins, and the PARAMS floats."""
        return index_bytes(self.entries) + bin_bytes(self.entries) + 4 * PARAMS


def index_bytes(entries: int) -> int:
    return 3 * ((entries + 1) // 2)


def bin_bytes(entries: int) -> int:
    return (entries + 3) // 4


# --- chunks ---------------------------------------------------------------------------------------
def to_chunks(x: tf.Tensor, plan: ChunkPlan) -> tf.Tensor:
    """[chunks, chunk_len]: the tensor's tiles, row-major over the tiles, each tile row-major."""
    m = tf.reshape(x, [plan.rows // plan.tile_rows, plan.tile_rows, plan.cols // plan.tile_cols, plan.tile_cols])
    return tf.reshape(tf.transpose(m, [0, 2, 1, 3]), [plan.chunks, plan.chunk_len])


def from_chunks(chunks: tf.Tensor, plan: ChunkPlan) -> tf.Tensor:
    m = tf.reshape(chunks, [plan.rows // plan.tile_rows, plan.cols // plan.tile_cols, plan.tile_rows, plan.tile_cols])
    return tf.reshape(tf.transpose(m, [0, 2, 1, 3]), plan.shape)


def top_k(x: tf.Tensor, plan: ChunkPlan) -> tuple[tf.Tensor, tf.Tensor]:
    """(int32 indices within each chunk [entries], float32 values [entries]), chunk-major; each chunk's in the
    order of decreasing magnitude, the lower index first among equals (tf.math.top_k's order)."""
    chunks = to_chunks(x, plan)
    _, indices = tf.math.top_k(tf.abs(chunks), k=plan.k, sorted=True)
    values = tf.gather(chunks, indices, batch_dims=1)
    return tf.reshape(indices, [-1]), tf.reshape(values, [-1])


def scatter(indices: tf.Tensor, values: tf.Tensor, plan: ChunkPlan) -> tf.Tensor:
    """The dense tensor holding `values` at `indices` (as top_k gives them) and zeros elsewhere."""
    rows = tf.repeat(tf.range(plan.chunks), plan.k)
    positions = tf.stack([rows, tf.cast(indices, tf.int32)], axis=1)
    dense = tf.scatter_nd(positions, values, [plan.chunks, plan.chunk_len])
    return from_chunks(dense, plan)


# --- 2-bit values ---------------------------------------------------------------------------------
def quantize(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 bins [n] in 0..3, float32 params [PARAMS]: the shift, then each bin's mean of the centred values)."""
    n = tf.cast(tf.size(values), tf.float32)
    shift = tf.reduce_mean(values)
    centred = values - shift
    sigma = tf.norm(centred) / tf.sqrt(tf.maximum(n - 1.0, 1.0))
    scale = RANGE_SIGMAS * sigma / BINS
    safe = tf.where(scale > 0, scale, 1.0)
    bins = tf.clip_by_value(tf.round(centred / safe + BINS // 2), 0, BINS - 1)
    bins = tf.where(scale > 0, bins, tf.fill(tf.shape(bins), float(BINS // 2)))
    bins = tf.cast(bins, tf.int32)
    sums = tf.math.unsorted_segment_sum(centred, bins, BINS)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(centred), bins, BINS)
    means = tf.where(counts > 0, sums / tf.maximum(counts, 1.0), 0.0)
    return tf.cast(bins, tf.uint8), tf.concat([[shift], means], axis=0)


def dequantize(bins: tf.Tensor, params: tf.Tensor) -> tf.Tensor:
    return tf.gather(params[1:], tf.cast(bins, tf.int32)) + params[0]


# --- packing ---------------------------------------------------------------------------------------
_or, _and = tf.bitwise.bitwise_or, tf.bitwise.bitwise_and
_left, _right = tf.bitwise.left_shift, tf.bitwise.right_shift


def pack_bins(bins: tf.Tensor) -> tf.Tensor:
    """uint8 [ceil(n / 4)]: four 2-bit bins a byte, the first in the lowest bits (zeros pad the last)."""
    b = tf.cast(bins, tf.int32)
    b = tf.reshape(tf.pad(b, [[0, (-tf.size(b)) % 4]]), [-1, 4])
    packed = _or(_or(b[:, 0], _left(b[:, 1], 2)), _or(_left(b[:, 2], 4), _left(b[:, 3], 6)))
    return tf.cast(packed, tf.uint8)


def unpack_bins(packed: tf.Tensor, n: int) -> tf.Tensor:
    p = tf.cast(packed, tf.int32)[:, None]
    return tf.cast(tf.reshape(_and(_right(p, tf.constant([0, 2, 4, 6])), 3), [-1])[:n], tf.uint8)


def pack_indices(indices: tf.Tensor) -> tf.Tensor:
    """uint8 [3 · ceil(n / 2)]: two 12-bit indices (each below 4,096) in three bytes: the first's low byte,
    then its high nibble under the second's low nibble, then the second's high byte."""
    i = tf.cast(indices, tf.int32)
    pairs = tf.reshape(tf.pad(i, [[0, tf.size(i) % 2]]), [-1, 2])
    a, b = pairs[:, 0], pairs[:, 1]
    packed = tf.stack([_and(a, 0xFF), _or(_right(a, 8), _left(_and(b, 0xF), 4)), _right(b, 4)], axis=1)
    return tf.cast(tf.reshape(packed, [-1]), tf.uint8)


def unpack_indices(packed: tf.Tensor, n: int) -> tf.Tensor:
    t = tf.reshape(tf.cast(packed, tf.int32), [-1, 3])
    a = _or(t[:, 0], _left(_and(t[:, 1], 0xF), 8))
    b = _or(_right(t[:, 1], 4), _left(t[:, 2], 4))
    return tf.reshape(tf.stack([a, b], axis=1), [-1])[:n]


def densities(shapes: list[tuple[int, ...]], top_k: int = TOP_K) -> float:
    """The share of a model's values a worker sends (entries over values)."""
    plans = [ChunkPlan.of(s, top_k=top_k) for s in shapes]
    return sum(p.entries for p in plans) / sum(math.prod(p.shape) for p in plans)

