"""How long each model takes on this machine, as a worker and the PS would run it.

    python benchmarks/model_speed.py --models lenet5 resnet18 alexnet vgg15

Per model, in TensorFlow's graph mode on --threads threads (a worker's default: one):
  step        one training step of --batch images (forward, backward, Adam), the median of --steps
              after a warm-up;
  evaluation  the forward pass over 500 images (the PS evaluates the test set in batches of 500).
From these, an estimate for one epoch of --images training images shared by --workers workers on
--cores cores (workers beyond the core count wait their turn), plus the PS's evaluation of
--test-images images at the epoch's end. Communication is left out: on loopback it is small next to
a large model's step. Prints a markdown table and writes JSON (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import models
from helpers import argtypes, provenance
from helpers.optim import MODEL_EPSILON, Adam

EVAL_BATCH = 500  # the PS's evaluation batch (runtime/ps.py)


def time_model(name: str, classes: int, batch: int, steps: int, threads: int, seed: int) -> dict:
    """Median seconds of one training step of `batch` images and of one evaluation batch, in a fresh graph."""
    model = models.get(name, classes)
    graph = tf.Graph()
    with graph.as_default():
        params = {key: tf.Variable(value, name=key.replace("/", "_")) for key, value in model.init(seed).items()}
        images = tf.compat.v1.placeholder(tf.float32, [None, *model.input_shape])
        labels = tf.compat.v1.placeholder(tf.int32, [None])
        logits = model.forward(params, images)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train = Adam(params, 1e-3, epsilon=MODEL_EPSILON).apply(tf.gradients(loss, list(params.values())))
        predictions = tf.argmax(logits, axis=1)
        init = tf.compat.v1.global_variables_initializer()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    rng = np.random.default_rng(seed)
    x = rng.random((max(batch, EVAL_BATCH), *model.input_shape), dtype=np.float32)
    y = rng.integers(0, classes, len(x)).astype(np.int32)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        session.run(init)
        step_seconds = []
        for i in range(steps + 2):  # the first two build kernels and caches: not counted
            start = time.perf_counter()
            session.run(train, {images: x[:batch], labels: y[:batch]})
            if i >= 2:
                step_seconds.append(time.perf_counter() - start)
        eval_seconds = []
        for _ in range(3):
            start = time.perf_counter()
            session.run(predictions, {images: x[:EVAL_BATCH]})
            eval_seconds.append(time.perf_counter() - start)
    return {"model": model.name, "parameters": model.layout.total, "pushed": model.layout.pushed,
            "step_seconds": float(np.median(step_seconds)), "step_seconds_min": float(np.min(step_seconds)),
            "eval_seconds_per_500": float(np.median(eval_seconds[1:]))}


def estimate_epoch(row: dict, images: int, batch: int, workers: int, cores: int, test_images: int) -> dict:
    """Seconds of one epoch: every worker's steps, run `cores` at a time, then the PS's evaluation."""
    steps_per_worker = images // (batch * workers)
    train = steps_per_worker * row["step_seconds"] * workers / min(workers, cores)
    evaluation = row["eval_seconds_per_500"] * test_images / EVAL_BATCH
    return {"steps_per_worker": steps_per_worker, "epoch_train_seconds": train,
            "epoch_eval_seconds": evaluation, "epoch_seconds": train + evaluation}


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["lenet5", "resnet18", "alexnet", "vgg15"], choices=models.NAMES)
    p.add_argument("--classes", type=argtypes.int_at_least(2), default=10)
    p.add_argument("--batch", type=argtypes.positive_int, default=125, help="images per training step (a worker's batch)")
    p.add_argument("--steps", type=argtypes.positive_int, default=10, help="timed steps per model")
    p.add_argument("--threads", type=argtypes.positive_int, default=1, help="TensorFlow threads (a worker's default: 1)")
    p.add_argument("--images", type=argtypes.positive_int, default=60000, help="training images per epoch")
    p.add_argument("--test-images", type=argtypes.positive_int, default=10000, help="images the PS evaluates per epoch")
    p.add_argument("--workers", type=argtypes.positive_int, default=4)
    p.add_argument("--cores", type=argtypes.positive_int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=argtypes.nonnegative_int, default=0)
    p.add_argument("--out", default="results/models/speed.json")
    args = p.parse_args()
    tf.compat.v1.disable_eager_execution()

    rows = []
    for name in args.models:
        row = time_model(name, args.classes, args.batch, args.steps, args.threads, args.seed)
        row.update(estimate_epoch(row, args.images, args.batch, args.workers, args.cores, args.test_images))
        rows.append(row)
        print(f"{name}: {1000 * row['step_seconds']:.0f} ms a step, epoch ~{row['epoch_seconds'] / 60:.1f} min", flush=True)

    print(f"\n| model | parameters | step of {args.batch} images (ms) | evaluation of {EVAL_BATCH} images (ms) "
          f"| epoch of {args.images:,} images, {args.workers} workers, {args.cores} cores (min) "
          f"| of which the PS's evaluation of {args.test_images:,} (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {1000 * r['step_seconds']:.0f} | {1000 * r['eval_seconds_per_500']:.0f} "
              f"| {r['epoch_seconds'] / 60:.1f} | {r['epoch_eval_seconds']:.0f} |")
    result = {"settings": {k: v for k, v in vars(args).items() if k not in ("out", "models")},
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "tensorflow": tf.__version__, "load_average": os.getloadavg()},
              "models": rows, "provenance": provenance.record()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
