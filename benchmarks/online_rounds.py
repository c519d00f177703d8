"""What an online MP² round costs the PS: seconds per optimizer step and per round, beside the predictor's size.

    python benchmarks/online_rounds.py                              # LeNet-5, push front+head (the measured setting)
    python benchmarks/online_rounds.py --model resnet18 --push front --fit-input --steps 20

The rounds are runtime.methods.rounds.GraphRounds exactly as the PS builds them (the PS's process, a
TensorFlow session whose ops use --threads threads each, as mp2_ps.py's), trained on snapshots drawn around a
glorot-initialised model and on real Fashion-MNIST images (synthetic ones with --dataset synthetic):
the time of a step does not depend on the values. A first round of --steps steps is timed after a few
warm-up steps; a round's cost is then (first|later) round steps × seconds per step. Beside it: the time
of the online check (the assembled model on 1,000 images) and of one snapshot's accuracy, which a
refresh window adds. Writes --out/online_rounds.json (with provenance) when --out is given.
"""
from __future__ import annotations

import argparse
import time

from helpers import tfstart  # noqa: F401  (TensorFlow without Keras)
import numpy as np
import tensorflow as tf

import data
from helpers import provenance
from helpers.npzio import write_json
from models import get
from models.evaluate import predicted_labels
from models.layout import glorot_init
from runtime.methods.mp2_options import REFERENCE_STEPS_PER_EPOCH, MP2Options
from runtime.methods.rounds import ROUND_IMAGE_BATCH, GraphRounds


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet5")
    p.add_argument("--push", default="front+head")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--fit-input", action="store_true")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps timed")
    p.add_argument("--snapshots", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="threads each op may use, as mp2_ps.py's --threads")
    p.add_argument("--dense-rank", type=int, default=MP2Options().dense_rank,
                   help="the predictor's dense-head bottleneck, 0: the reference's heads (default: the method's)")
    p.add_argument("--steps-per-epoch", type=int, default=REFERENCE_STEPS_PER_EPOCH,
                   help="the run's, for the rounds' default lengths (default: Fashion-MNIST's with 4 workers of 125)")
    p.add_argument("--out", help="directory for online_rounds.json")
    args = p.parse_args()

    dataset = data.load(args.dataset, image_shape=get(args.model, 10).input_shape, fit_input=args.fit_input)
    model = get(args.model, dataset.classes, push=args.push)
    layout = model.layout
    rng = np.random.default_rng(0)
    base = layout.flatten(glorot_init(layout, 0))
    groups = [layout.split(base + 0.01 * rng.standard_normal(layout.total).astype(np.float32))[0]
              for _ in range(args.snapshots)]
    defaults = MP2Options().for_run(args.steps_per_epoch)

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        rounds = GraphRounds(model, dataset.train_x, dataset.train_y, np.arange(len(dataset.train_y)),
                             first_steps=args.steps, steps=args.steps, seed=0, dense_rank=args.dense_rank or None)
        # As runtime/cluster.py's server: --threads per op, the pool beside them TensorFlow's.
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.threads)
        session = tf.compat.v1.Session(config=config)
        rounds.build(lambda: session, "/cpu:0")
        vector = tf.compat.v1.placeholder(tf.float32, [layout.total])
        images = tf.compat.v1.placeholder(tf.float32, [None, *model.input_shape])
        check = predicted_labels(model, rounds.trainee(layout.split(vector)[0]), images)
        session.run(tf.compat.v1.global_variables_initializer())

        rounds.first_steps = 5  # a short first round warms the graph up (TensorFlow's first runs are slow)
        rounds.start(0, 1, groups)
        rounds.poll(600)
        rounds.accept()
        t0 = time.perf_counter()
        rounds.start(0, 2, groups)
        result = rounds.poll(3600)
        per_step = (time.perf_counter() - t0) / args.steps
        assert result is not None and result.ok, result

        feed = {vector: base, images: dataset.train_x[:1000]}
        session.run(check, feed)
        t0 = time.perf_counter()
        for _ in range(5):
            session.run(check, feed)
        check_seconds = (time.perf_counter() - t0) / 5

    weights = sum(int(np.prod(v.shape)) for v in rounds.trainee.weight_vars.values())
    figures = {
        "model": args.model, "push": args.push, "pushed_values": layout.pushed, "predicted_values": layout.predicted,
        "predictor_weights": weights, "dense_rank": args.dense_rank, "image_batch": ROUND_IMAGE_BATCH, "threads": args.threads,
        "ms_per_optimizer_step": round(1000 * per_step, 2),
        "first_round_steps": defaults.first_round_steps, "round_steps": defaults.round_steps,
        "first_round_seconds": round(per_step * defaults.first_round_steps, 2),
        "later_round_seconds": round(per_step * defaults.round_steps, 2),
        "check_seconds_1000_images": round(check_seconds, 4),
    }
    for k, v in figures.items():
        print(f"{k:28s} {v}")
    if args.out:
        write_json(f"{args.out}/online_rounds.json", {**figures, "provenance": provenance.record()})


if __name__ == "__main__":
    main()
