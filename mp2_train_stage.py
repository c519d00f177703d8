"""MP² stage 2: train the predictor (pushed group -> predicted group) from a parameter dataset.

    python mp2_train_stage.py --model lenet5 --dataset fashion_mnist --snapshots runs/collect/snapshots

The default loss is the method's own, prediction-result based: the target network is assembled from a
snapshot's pushed group and the predictor's output, and its cross-entropy on (mixup) training images
trains the predictor. Each epoch the assembled networks of the held-out snapshots are tested next to
the snapshots' own parameters; the best predictor (by held-out assembled accuracy) is kept as
<out>/predictor.npz, for mp2_ps.py --method mp2 --predictor. <out>/report.json and report.csv hold
the per-epoch figures (epoch 0: the untrained predictor).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import data
import paramset
from predictor import CheckpointError, Predictor, save_checkpoint
from runtime import flags
from runtime.progress import Progress
from stage import StageError, snapshots as snapset, state, training


def fail(message: str) -> None:
    sys.exit(f"mp2_train_stage: error: {message}")


# --- flags ---------------------------------------------------------------------------------------
parser = argparse.ArgumentParser(prog="mp2_train_stage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default="lenet5", help="the target model the snapshots are of")
parser.add_argument("--dataset", default="fashion_mnist", help=f"images to train and test with; one of {', '.join(data.NAMES)}")
parser.add_argument("--data-dir", help="where the dataset's files are (else $MP2_DATA, Debian's, Keras's cache)")
parser.add_argument("--snapshots", nargs="+", required=True, metavar="DIR", help="parameter-dataset directories (one or several)")
parser.add_argument("--out", help="output directory (default predictors/<model>-<dataset>)")
parser.add_argument("--epochs", type=int, default=6, help="passes over the training snapshots (0: only evaluate the untrained predictor)")
parser.add_argument("--loss", choices=training.LOSSES, default="result",
                    help="result: cross-entropy of the assembled network (the method's); mse: regress the true predicted group")
parser.add_argument("--image-batches", type=int, default=40, help="optimizer steps (fresh image mini-batches) per snapshot batch")
parser.add_argument("--image-batch", type=int, default=125, help="images per mini-batch")
parser.add_argument("--snapshot-batch", type=int, default=1, help="snapshots per predictor step (their losses are averaged)")
parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
parser.add_argument("--mixup", type=float, default=1.0, help="mixup alpha on the image mini-batches; 0 turns it off")
parser.add_argument("--holdout", type=float, default=0.2, help="fraction of snapshots held out for evaluation (at least 1)")
parser.add_argument("--eval-images", type=int, help="test images for the held-out evaluation (default: all)")
parser.add_argument("--seed", type=int, default=0, help="predictor init, split, image order and mixup (and the synthetic data)")
parser.add_argument("--resume", action="store_true", help="continue from <out>/last.npz (same settings; --epochs may grow)")
parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (0: TensorFlow decides)")
parser.add_argument("--cross-dataset", action="store_true", help="allow images of another dataset than the snapshots were collected on")
args = parser.parse_args()
for name, value, low in (("--epochs", args.epochs, 0), ("--image-batches", args.image_batches, 1),
                         ("--image-batch", args.image_batch, 1), ("--snapshot-batch", args.snapshot_batch, 1),
                         ("--threads", args.threads, 0), ("--seed", args.seed, 0)):
    if value < low:
        fail(f"{name} must be at least {low}, got {value}")
if not args.lr > 0:
    fail(f"--lr must be positive, got {args.lr}")
if args.mixup < 0:
    fail(f"--mixup must be >= 0 (0 turns it off), got {args.mixup}")
if not 0 <= args.holdout < 1:
    fail(f"--holdout is a fraction in [0, 1), got {args.holdout}")
if args.eval_images is not None and args.eval_images < 1:
    fail(f"--eval-images must be at least 1, got {args.eval_images}")
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)

# --- data: images, snapshots, split --------------------------------------------------------------
try:
    dataset, model = flags.load_data_and_model(args)
    snaps = snapset.load(args.snapshots, model.layout, dataset.name, args.cross_dataset)
    training.ImageStream(len(dataset.train_y), args.image_batch, np.random.default_rng(0))  # size check
except (data.DataError, paramset.ParamSetError, StageError, ValueError) as e:
    fail(e)
layout = model.layout
parts = snapset.split(len(snaps), args.holdout, args.seed)
eval_rng = np.random.default_rng([args.seed, 11])
n_eval = min(args.eval_images or len(dataset.test_y), len(dataset.test_y))
eval_idx = np.sort(eval_rng.choice(len(dataset.test_y), n_eval, replace=False)) if n_eval < len(dataset.test_y) \
    else np.arange(len(dataset.test_y))
test_x, test_y = dataset.test_x[eval_idx], dataset.test_y[eval_idx]
out = Path(args.out or f"predictors/{model.name}-{dataset.name}")
out.mkdir(parents=True, exist_ok=True)
snapshot_dirs = [str(Path(d).resolve()) for d in args.snapshots]
config = {
    "model": model.name, "fingerprint": layout.fingerprint(), "dataset": dataset.name,
    "snapshots": snapshot_dirs, "snapshot_count": len(snaps), "epochs": args.epochs, "loss": args.loss,
    "image_batches": args.image_batches, "image_batch": args.image_batch, "snapshot_batch": args.snapshot_batch,
    "lr": args.lr, "mixup": args.mixup, "holdout": args.holdout, "eval_images": n_eval, "seed": args.seed,
    "threads": args.threads, "cross_dataset": args.cross_dataset,
}

# --- build: the predictor and its optimizer, fresh or from <out>/last.npz ------------------------
rows, best, start_epoch, weights, adam_state = [], None, 0, None, None
if args.resume:
    try:
        weights, adam_state, saved = state.load_state(out, config)
    except state.ResumeError as e:
        fail(e)
    rows, best, start_epoch = saved["rows"], saved["best"], saved["epoch"]
try:
    predictor = Predictor(layout, weights=weights, seed=args.seed)
    trainer = training.Trainer(model, predictor, args.loss, args.lr)
    if adam_state is not None:
        trainer.adam.load_state(adam_state)
except ValueError as e:
    fail(f"--resume: {out / state.LAST} does not fit: {e}" if args.resume else e)
steps = training.steps_per_epoch(len(parts.train), args.snapshot_batch, args.image_batches)
print(f"mp2_train_stage: {model.name} ({layout.pushed:,} pushed -> {layout.predicted:,} predicted values), "
      f"{len(snaps)} snapshots of {snaps.dataset} ({len(parts.train)} to train, {len(parts.heldout)} held out); "
      f"{args.loss} loss on {dataset.name}, {steps} steps per epoch; {n_eval} test images; output in {out}"
      + (f"; resuming after epoch {start_epoch}" if args.resume else ""), flush=True)

# The held-out snapshots' own accuracy (their real parameters) does not change: measure it once.
own = [trainer.accuracy(snaps.vectors([i])[0], test_x, test_y) for i in parts.heldout]
heldout = [{"index": int(i), **{k: snaps.records[i].get(k) for k in ("source", "step", "epoch", "test_acc")},
            "own_acc": acc} for i, acc in zip(parts.heldout, own)]


def evaluate(epoch: int, train_loss: float | None, started: float) -> dict:
    assembled = [trainer.accuracy(trainer.assembled(snaps.pushed[i]), test_x, test_y) for i in parts.heldout]
    a, o = float(np.mean(assembled)), float(np.mean(own))
    return {"epoch": epoch, "train_loss": train_loss, "heldout_assembled_acc": a, "heldout_own_acc": o,
            "gap": o - a, "seconds": time.monotonic() - started, "assembled_by_snapshot": assembled}


def record(row: dict) -> None:
    """Keep the row; a new best becomes predictor.npz; save the resumable state and the report."""
    global best
    rows.append(row)
    if best is None or row["heldout_assembled_acc"] > best["heldout_assembled_acc"]:
        best = {k: row[k] for k in ("epoch", "heldout_assembled_acc", "heldout_own_acc", "gap")}
        save_checkpoint(str(out / state.BEST), layout, predictor.numpy_weights(), {
            "dataset": dataset.name, "snapshot_dataset": snaps.dataset, "snapshot_dirs": snapshot_dirs,
            "loss": args.loss, "epoch": row["epoch"], "heldout_assembled_acc": row["heldout_assembled_acc"],
            "heldout_own_acc": row["heldout_own_acc"], "snapshots": len(snaps), "seed": args.seed,
        })
    state.save_state(out, predictor.numpy_weights(), trainer.adam.state(), config, row["epoch"], rows, best)
    report = {
        "config": config, "model": model.name, "dataset": dataset.name, "snapshot_dataset": snaps.dataset,
        "train_snapshots": len(parts.train), "heldout": heldout, "steps_per_epoch": steps,
        "heldout_recorded_acc": _mean([h["test_acc"] for h in heldout]),
        "gap_is": "heldout_own_acc - heldout_assembled_acc: what prediction costs (negative: it gains)",
        "rows": rows, "best_epoch": best["epoch"], "best": best, "checkpoint": str(out / state.BEST),
        "resumed_from_epoch": start_epoch if args.resume else None,
    }
    state.write_report(out, report)
    print(f"mp2_train_stage: epoch {row['epoch']}/{args.epochs}"
          + ("" if row["train_loss"] is None else f" loss {row['train_loss']:.4f}")
          + f" held-out assembled {row['heldout_assembled_acc']:.4f} vs own {row['heldout_own_acc']:.4f} "
            f"(gap {row['gap']:+.4f}) {row['seconds']:.1f}s", flush=True)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# --- loop ----------------------------------------------------------------------------------------
try:
    if not rows:
        record(evaluate(0, None, time.monotonic()))  # the untrained predictor: the control for every epoch
    for epoch in range(start_epoch + 1, args.epochs + 1):
        t0 = time.monotonic()
        rng = np.random.default_rng([args.seed, epoch])  # from (seed, epoch): a resumed run draws the same
        progress = Progress(steps, f"epoch {epoch}/{args.epochs} step")
        loss = training.train_epoch(
            trainer, snaps, parts.train, dataset, snapshot_batch=args.snapshot_batch,
            image_batches=args.image_batches, image_batch=args.image_batch, mixup=args.mixup, rng=rng,
            on_step=lambda done, value: progress.update(done, {"loss": value}),
        )
        record(evaluate(epoch, loss, t0))
except FloatingPointError as e:
    fail(e)
except KeyboardInterrupt:
    sys.exit(130)
except CheckpointError as e:
    fail(e)

# --- report --------------------------------------------------------------------------------------
print(f"mp2_train_stage: best epoch {best['epoch']}: held-out assembled accuracy {best['heldout_assembled_acc']:.4f} "
      f"vs own {best['heldout_own_acc']:.4f} (gap {best['gap']:+.4f}); predictor {out / state.BEST}", flush=True)
