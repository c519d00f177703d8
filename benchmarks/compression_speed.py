"""Time of one compress step, DGC vs exact Top-k, on a model's tensors, in graph mode.

    .venv/bin/python benchmarks/compression_speed.py --model resnet18 --ratio 0.001 --steps 20

The gradients live in variables (random normal), so a step times the compression alone, not a
feed. Each step runs values, indices, dense and the state update in one session.run, as a worker
would. Prints the median and the spread of the step times, and how many entries each one sent.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from helpers import tfstart  # noqa: E402,F401  (before TensorFlow: without Keras)

import tensorflow as tf  # noqa: E402

import models  # noqa: E402
from compression import DGC, TopK  # noqa: E402
from helpers import argtypes  # noqa: E402


def time_steps(make, shapes, steps: int, seed: int) -> tuple[list[float], int]:
    """Seconds per compress step after one warm-up step, and the entries sent in the last."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        grads = [tf.Variable(tf.random.normal(s), trainable=False) for s in shapes]
        compressor = make(shapes)
        out = compressor.compress([g.read_value() for g in grads])
        fetches = [out.values, out.indices, out.dense, out.update]
        extra = [compressor.ratio] if isinstance(compressor, DGC) else []
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.variables_initializer(grads + compressor.variables + extra))
            session.run(fetches)  # warm-up: allocation, kernel selection
            seconds = []
            for _ in range(steps):
                start = time.perf_counter()
                values, _, _, _ = session.run(fetches)
                seconds.append(time.perf_counter() - start)
    return seconds, len(values)


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", choices=models.NAMES)
    p.add_argument("--ratio", type=argtypes.open_fraction, default=0.001)
    p.add_argument("--steps", type=argtypes.positive_int, default=20)
    p.add_argument("--seed", type=argtypes.nonnegative_int, default=0)
    args = p.parse_args()
    tf.compat.v1.disable_eager_execution()
    shapes = [tuple(spec.shape) for spec in models.get(args.model).layout.params]
    total = sum(tf.TensorShape(s).num_elements() for s in shapes)
    print(f"{args.model}: {len(shapes)} tensors, {total:,} values; ratio {args.ratio}; {args.steps} steps")
    makers = {
        "topk (exact)": lambda s: TopK(s, args.ratio),
        "dgc": lambda s: DGC(s, ratio=args.ratio),
    }
    for name, make in makers.items():
        seconds, sent = time_steps(make, shapes, args.steps, args.seed)
        ms = sorted(1000 * x for x in seconds)
        print(f"  {name:<13} median {statistics.median(ms):8.1f} ms  (min {ms[0]:.1f}, max {ms[-1]:.1f})  sent {sent:,} entries")


if __name__ == "__main__":
    main()
