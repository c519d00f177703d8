"""Train the Weight Nowcaster Network (WNN, the comparison method) from a parameter dataset.

    python mp2_train_wnn.py --model lenet5 --dataset fashion_mnist --snapshots runs/collect/snapshots

The snapshots must be recorded at regular steps (a collecting run with regular snapshots). An
example is one scalar weight: its values at 5 snapshots `--spacing` apart, and its value
`--horizon` spacings after the last of them. The default horizon, 5, jumps as far ahead as the
history spans: the reference records 5 epochs and then overwrites the weights with the nowcast.
Three nowcasters (conv kernels, dense kernels, biases) train with Adam on the mean absolute error
of the normalised change; `--weights` random weights of each kind are drawn at every position.
Held out: the last `--holdout` share of each trajectory. Each epoch reports the held-out loss
next to predicting no change and, on `--eval-images` test images, the accuracy of the held-out
models jumped by the WNN against the model at their last recorded snapshot. <out>/wnn.npz keeps
the epoch with the lowest held-out loss; <out>/report.json and report.csv hold every epoch
(epoch 0: untrained).
"""
from helpers import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import data
import data.flags
import paramset
from helpers import argtypes, provenance
from runtime import flags
from wnn import checkpoint, features, network, training

parser = argparse.ArgumentParser(allow_abbrev=False, prog="mp2_train_wnn", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default="lenet5", help="the target model the snapshots are of")
parser.add_argument("--push", default="front", help=argparse.SUPPRESS)  # the nowcaster does not depend on it
data.flags.add_flags(parser)  # the snapshots' dataset (its test images measure the jumps)
parser.add_argument("--snapshots", nargs="+", required=True, metavar="DIR", help="parameter-dataset directories (one trajectory each)")
parser.add_argument("--out", help="output directory (default wnns/<model>-<dataset>)")
parser.add_argument("--epochs", type=argtypes.nonnegative_int, default=10, help="passes over the training examples (0: evaluate the untrained WNN)")
parser.add_argument("--spacing", type=argtypes.positive_int, default=1, help="snapshots between two history entries")
parser.add_argument("--horizon", type=argtypes.positive_int, default=5, help="spacings from the last history entry to the predicted value")
parser.add_argument("--weights", type=argtypes.positive_int, default=4096, help="random weights of each kind per example position")
parser.add_argument("--batch", type=argtypes.positive_int, default=1024, help="weights per optimizer step")
parser.add_argument("--lr", type=argtypes.positive_float, default=1e-3, help="Adam learning rate")
parser.add_argument("--l1-kernel", type=argtypes.nonnegative_float, default=1e-6, help="L1 on the stream layers' kernels (the reference's)")
parser.add_argument("--l1-bias", type=argtypes.nonnegative_float, default=0.1, help="L1 on the stream layers' biases (the reference's)")
parser.add_argument("--holdout", type=argtypes.float_in(0.0, 1.0, low_open=True, high_open=True), default=0.2,
                    help="share of each trajectory, at its end, held out")
parser.add_argument("--eval-images", type=argtypes.nonnegative_int, default=2000, help="test images for the held-out accuracy (0: skip it)")
parser.add_argument("--allow-irregular", action="store_true", help="accept snapshots at irregular steps as if evenly spaced")
parser.add_argument("--seed", type=argtypes.nonnegative_int, default=0, help="initialisation, sampling and order")
parser.add_argument("--threads", type=argtypes.nonnegative_int, default=1, help="TensorFlow threads (0: TensorFlow decides)")
args = parser.parse_args()
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)


def fail(message) -> None:
    sys.exit(f"mp2_train_wnn: error: {message}")


# --- data: snapshots, trajectories, examples ------------------------------------------------------
try:
    dataset, model = flags.load_data_and_model(args)
    snaps = paramset.load(args.snapshots, model.layout, dataset.name, cross_dataset=False)
    trajs = training.trajectories(snaps, args.allow_irregular)
    train_anchors, held_anchors = training.anchors(trajs, args.spacing, args.horizon, args.holdout)
except (data.DataError, paramset.ParamSetError, training.WnnError, ValueError) as e:
    fail(e)
layout = model.layout
indices = training.kind_indices(layout)
kinds = [k for k in network.KINDS if len(indices[k])]
rng = np.random.default_rng([args.seed, 1])
train_pairs = {k: training.sample_pairs(snaps, train_anchors, indices[k], args.weights, rng) for k in kinds}
held_pairs = {k: training.sample_pairs(snaps, held_anchors, indices[k], args.weights, rng) for k in kinds}
step_spacings = {t.spacing for t in trajs}
recording_steps = step_spacings.pop() if len(step_spacings) == 1 and None not in step_spacings else None
tester = training.Tester(model, dataset.test_x[: args.eval_images], dataset.test_y[: args.eval_images]) \
    if args.eval_images else None
out = Path(args.out or f"wnns/{model.name}-{dataset.name}")
out.mkdir(parents=True, exist_ok=True)
origin = provenance.record(out)
config = {k: v for k, v in vars(args).items()}
config.update(snapshots=[str(Path(d).resolve()) for d in args.snapshots], snapshot_count=len(snaps),
              recording_steps=recording_steps, train_positions=len(train_anchors), heldout_positions=len(held_anchors))
print(f"mp2_train_wnn: {model.name}, {len(snaps)} snapshots in {len(trajs)} trajectories "
      + (f"(every {recording_steps} steps)" if recording_steps else "(at irregular steps)") + f"; history {features.HISTORY} at spacing {args.spacing}, "
      f"horizon {args.horizon}; {len(train_anchors)} train / {len(held_anchors)} held-out positions; "
      + ", ".join(f"{k} {len(train_pairs[k]):,}/{len(held_pairs[k]):,} examples" for k in kinds)
      + f"; {network.count():,} parameters per nowcaster; output in {out}", flush=True)

trainers = {k: training.KindTrainer(network.init(args.seed + i), args.lr, args.l1_kernel, args.l1_bias)
            for i, k in enumerate(network.KINDS)}

# The held-out models' own accuracies (last recorded, and the true future) do not change: once.
last_acc = target_acc = None
if tester:
    last_acc = float(np.mean([tester.accuracy(snaps.vectors([a.history[-1]])[0]) for a in held_anchors]))
    target_acc = float(np.mean([tester.accuracy(snaps.vectors([a.target])[0]) for a in held_anchors]))


def evaluate(epoch: int, train_loss: dict, started: float) -> dict:
    params = {k: t.numpy() for k, t in trainers.items()}
    row = {"epoch": epoch}
    for k in kinds:
        row.update({f"{k}_train_loss": train_loss.get(k)},
                   **{f"{k}_heldout_{name}": v for name, v in training.evaluate(params[k], held_pairs[k]).items()})
    row["heldout_loss"] = float(np.mean([row[f"{k}_heldout_loss"] for k in kinds]))
    row["heldout_no_change_loss"] = float(np.mean([row[f"{k}_heldout_no_change_loss"] for k in kinds]))
    if tester:
        jumped = [tester.accuracy(training.jump_vector(params, snaps.vectors(a.history), indices)) for a in held_anchors]
        row.update(heldout_jumped_acc=float(np.mean(jumped)), heldout_last_acc=last_acc, heldout_target_acc=target_acc,
                   accuracy_gain=float(np.mean(jumped)) - last_acc)
    row["seconds"] = time.monotonic() - started
    return row


rows, best = [], None


def record(row: dict) -> None:
    """Keep the row; the lowest held-out loss so far becomes wnn.npz; rewrite the reports."""
    global best
    rows.append(row)
    if best is None or row["heldout_loss"] < best["heldout_loss"]:
        best = {k: row[k] for k in ("epoch", "heldout_loss", "heldout_no_change_loss")}
        checkpoint.save(out / "wnn.npz", {k: t.numpy() for k, t in trainers.items()}, {
            "model": model.name, "dataset": dataset.name, "fingerprint": layout.fingerprint(),
            "spacing": args.spacing, "horizon": args.horizon, "recording_steps": recording_steps,
            "spacing_steps": recording_steps and recording_steps * args.spacing,
            "horizon_steps": recording_steps and recording_steps * args.spacing * args.horizon,
            "trained_epochs": row["epoch"], "heldout_loss": row["heldout_loss"],
            "heldout_no_change_loss": row["heldout_no_change_loss"], "snapshots": config["snapshots"],
        })
    report = {"config": config, "parameters_per_nowcaster": network.count(), "kinds": kinds,
              "loss_is": "mean absolute error of the normalised change (targets clipped to [-1, 1]); "
                         "no_change: the same for predicting the last recorded value",
              "rows": rows, "best": best, "checkpoint": str(out / "wnn.npz"), "provenance": origin}
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "report.json")
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with open(out / ".report.csv.tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(out / ".report.csv.tmp", out / "report.csv")
    acc = "" if "accuracy_gain" not in row else (
        f"; held-out accuracy jumped {row['heldout_jumped_acc']:.4f} vs last {row['heldout_last_acc']:.4f} "
        f"(gain {row['accuracy_gain']:+.4f}, true future {row['heldout_target_acc']:.4f})")
    print(f"mp2_train_wnn: epoch {row['epoch']}/{args.epochs} held-out loss {row['heldout_loss']:.4f} vs no change "
          f"{row['heldout_no_change_loss']:.4f} (" + ", ".join(f"{k} {row[f'{k}_heldout_loss']:.4f}" for k in kinds)
          + f"){acc} {row['seconds']:.1f}s", flush=True)


try:
    record(evaluate(0, {}, time.monotonic()))
    for epoch in range(1, args.epochs + 1):
        t0 = time.monotonic()
        order_rng = np.random.default_rng([args.seed, 2, epoch])
        losses = {k: trainers[k].train_epoch(train_pairs[k], args.batch, order_rng) for k in kinds}
        record(evaluate(epoch, losses, t0))
except FloatingPointError as e:
    fail(e)
except KeyboardInterrupt:
    sys.exit(130)
print(f"mp2_train_wnn: best epoch {best['epoch']}: held-out loss {best['heldout_loss']:.4f} vs no change "
      f"{best['heldout_no_change_loss']:.4f}; WNN {out / 'wnn.npz'}", flush=True)
