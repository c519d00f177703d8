"""What a checkpoint inside an epoch costs, against the training it protects (--checkpoint-every).

    python benchmarks/checkpoint_cost.py --models lenet5 resnet18

For each model: the time to write the PS's checkpoint (the model) and one worker's state file (Adam's
two slots, the baseline's state), as the runtime writes them (npzio: atomic, fsynced), the median of
`--repeats`; beside it the time of one training step on this machine (forward, backward and Adam
on one worker's batch of 125, CPU, median of 10), so the fraction of a run's time that a checkpoint
every N steps costs is (PS write + worker write) / (N × step). Prints a table; writes JSON with --out.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import tfstart  # noqa: F401,E402  (first: TensorFlow starts without Keras)

import numpy as np  # noqa: E402

import models  # noqa: E402
from helpers import npzio, provenance  # noqa: E402
from helpers.npzio import write_json  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_seconds(model: models.Model, batch: int) -> float:
    import tensorflow as tf

    from helpers.optim import Adam

    params = {k: tf.Variable(v) for k, v in model.init(0).items()}
    opt = Adam(params, 1e-3)
    x = tf.random.uniform([batch, *model.input_shape])
    y = tf.zeros([batch], tf.int64)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model.forward(params, x)))
        opt.apply(tape.gradient(loss, opt.vars))

    step()  # traced once
    return median_seconds(step, 10)


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["lenet5", "resnet18"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=125)
    p.add_argument("--every", type=int, default=100, help="the N the fraction is computed for")
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = models.get(name, 10)
            vector = model.init_vector(0)
            ps = median_seconds(lambda: npzio.write(Path(tmp) / "checkpoint.npz", {"model": vector}, {"epoch": 0}),
                                args.repeats)
            worker = median_seconds(lambda: npzio.write(Path(tmp) / "state.npz", {"m": vector, "v": vector}, {"step": 0}),
                                    args.repeats)
            step = step_seconds(model, args.batch)
            rows.append({"model": name, "parameters": model.layout.total, "ps_write_seconds": ps,
                         "worker_write_seconds": worker, "step_seconds": step,
                         "fraction_at_every": (ps + worker) / (args.every * step), "every": args.every})
    print(f"| model | parameters | PS write (ms) | worker write (ms) | one step (ms) | cost at every {args.every} steps |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {r['ps_write_seconds'] * 1e3:.1f} | "
              f"{r['worker_write_seconds'] * 1e3:.1f} | {r['step_seconds'] * 1e3:.1f} | {r['fraction_at_every']:.2%} |")
    if args.out:
        write_json(Path(args.out), {"rows": rows, "provenance": provenance.record(Path(args.out).parent)})


if __name__ == "__main__":
    main()
