"""MP² stage 2: train the predictor (pushed group -> predicted group) from a parameter dataset.

    python mp2_train_stage.py --model lenet5 --dataset fashion_mnist --snapshots runs/collect/snapshots

The flags, what is held out and what each figure is for: stage/flags.py (python mp2_train_stage.py --help).
"""
from helpers import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import sys
import time
from pathlib import Path

from predictor.stage import flags as stage_flags  # without TensorFlow: --help and a bad flag answer at once


def fail(message: object) -> None:
    sys.exit(f"mp2_train_stage: error: {message}")


# --- flags ---------------------------------------------------------------------------------------
args = stage_flags.build_parser().parse_args()
try:
    stage_flags.check(args)
except ValueError as e:
    fail(e)

import numpy as np  # noqa: E402 (after the flags, see above)
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
import models  # noqa: E402
import paramset  # noqa: E402
from helpers import provenance  # noqa: E402
from predictor import CheckpointError, Predictor, load_checkpoint, resolve_path, save_checkpoint  # noqa: E402
from runtime import flags  # noqa: E402
from runtime.progress import Progress  # noqa: E402
from predictor.stage import state, training  # noqa: E402
from predictor.structure import choose_stage, weight_specs  # noqa: E402

holdout = stage_flags.DEFAULT_HOLDOUT if args.holdout is None else args.holdout
snapshot_dirs = [str(Path(d).resolve()) for d in args.snapshots]
heldout_dirs = [str(Path(d).resolve()) for d in args.holdout_snapshots or []]
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)

# --- --out: checked before the data are read, so a refusal costs nothing ---------------------------
try:
    dataset_label = Path(args.dataset).stem if data.own.is_path(args.dataset) else args.dataset
    out = Path(args.out or f"predictors/{models.get(args.model).name}-{dataset_label}")
    state.prepare_out(out, resume=args.resume, fresh=args.fresh, evaluate_only=args.epochs == 0)
except (ValueError, state.OutError) as e:
    fail(e)

# --- data: images (loss / validation / test), snapshots (training / held out) ---------------------
try:
    dataset, model = flags.load_data_and_model(args)
    train_snaps = paramset.load(args.snapshots, model.layout, dataset.name, args.cross_dataset,
                                minimum=1 if heldout_dirs else 2)
    if heldout_dirs:
        heldout_snaps = paramset.load(args.holdout_snapshots, model.layout, dataset.name, args.cross_dataset,
                                      minimum=1, flag="--holdout-snapshots")
        train_rows, heldout_rows = np.arange(len(train_snaps)), np.arange(len(heldout_snaps))
    else:
        heldout_snaps = train_snaps
        parts = paramset.split(paramset.steps_of(train_snaps), holdout)
        train_rows, heldout_rows = parts.train, parts.heldout
    n_train_images = len(dataset.train_y)
    n_val = args.val_images or min(stage_flags.DEFAULT_VAL_IMAGES, n_train_images // 10)
    loss_idx, val_idx = training.split_images(n_train_images, n_val)
    training.ImageStream(loss_idx, args.image_batch, np.random.default_rng(0))  # size check
except (data.DataError, paramset.ParamSetError, ValueError) as e:
    fail(e)
layout = model.layout
val_x, val_y = dataset.train_x[val_idx], dataset.train_y[val_idx]
eval_rng = np.random.default_rng([args.seed, 11])
n_eval = min(args.eval_images or len(dataset.test_y), len(dataset.test_y))
eval_idx = np.sort(eval_rng.choice(len(dataset.test_y), n_eval, replace=False)) if n_eval < len(dataset.test_y) \
    else np.arange(len(dataset.test_y))
test_x, test_y = dataset.test_x[eval_idx], dataset.test_y[eval_idx]
origin = provenance.record(out)
steps = training.steps_per_epoch(len(train_rows), args.snapshot_batch, args.image_batches)
lr_warmup = args.lr_warmup if args.lr_warmup is not None else None if args.resume else (steps if args.init else 0)
config = {
    "model": model.name, "fingerprint": layout.fingerprint(), "dataset": dataset.name, "push": args.push,
    "fit_input": args.fit_input, "train_images": args.train_images,
    "snapshots": snapshot_dirs, "snapshot_count": len(train_snaps), "holdout_snapshots": heldout_dirs,
    "heldout_count": len(heldout_rows), "epochs": args.epochs, "loss": args.loss, "head_rank": args.head_rank, "dense_rank": args.dense_rank,
    "image_batches": args.image_batches, "image_batch": args.image_batch, "snapshot_batch": args.snapshot_batch,
    "lr": args.lr, "lr_warmup": lr_warmup, "mixup": args.mixup, "holdout": None if heldout_dirs else holdout, "val_images": n_val,
    "eval_images": n_eval, "seed": args.seed, "threads": args.threads, "cross_dataset": args.cross_dataset,
    "init": args.init and str(Path(args.init).resolve()),
}

# --- build: the predictor and its optimizer, fresh or from <out>/last.npz ------------------------
rows, best, start_epoch, weights, adam_state = [], None, 0, None, None
if args.resume:
    try:
        weights, adam_state, saved = state.load_state(out, config)
    except state.ResumeError as e:
        fail(e)
    rows, best, start_epoch = saved["rows"], saved["best"], saved["epoch"]
    for key in state.INHERITED:  # a resumed run goes on as it was started
        if config[key] is None:
            config[key] = saved["config"].get(key)
    lr_warmup = config["lr_warmup"] or 0
elif args.init:
    try:  # a predictor of another model or pushed set is refused here, with both named
        weights, _ = load_checkpoint(resolve_path(args.init), model.layout)
    except CheckpointError as e:
        fail(f"--init: {e}")
if weights is None:  # a fresh predictor: its size, before any memory is spent on it
    size = sum(int(np.prod(w.shape)) for w in weight_specs(layout, choose_stage(layout), args.head_rank, args.dense_rank))
    if size > args.max_predictor_weights:
        fail(f"the predictor of {model.name} would have {size:,} weights, over --max-predictor-weights "
             f"{args.max_predictor_weights:,}: its dense heads decode 64 values into every weight of a predicted dense layer; "
             f"give --dense-rank 16 (online MP²'s) or raise --max-predictor-weights")
try:
    predictor = Predictor(layout, weights=weights, seed=args.seed, head_rank=args.head_rank, dense_rank=args.dense_rank)
    trainer = training.Trainer(model, predictor, args.loss, args.lr, lr_warmup)
    if adam_state is not None:
        trainer.adam.load_state(adam_state)
except ValueError as e:
    fail(f"--resume: {out / state.LAST} does not fit: {e}" if args.resume else e)
held_from = f"of {', '.join(args.holdout_snapshots)}" if heldout_dirs else "the last by step"
n_weights = sum(int(np.prod(v.shape)) for v in predictor.weight_vars.values())
print(f"mp2_train_stage: {model.name} ({layout.pushed:,} pushed -> {layout.predicted:,} predicted values; "
      f"predictor of head rank {predictor.head_rank}, {n_weights:,} weights), "
      f"{len(train_rows)} snapshots of {train_snaps.dataset} to train, {len(heldout_rows)} held out ({held_from}); "
      f"{args.loss} loss on {dataset.name} ({len(loss_idx)} training images), {steps} steps per epoch; "
      f"chosen on {n_val} validation images, reported on {n_eval} test images; output in {out}"
      + (f"; resuming after epoch {start_epoch}" if args.resume else ""), flush=True)

# The held-out snapshots' own accuracy (their real parameters) does not change: measure it once.
# For a large model this and each epoch's evaluation take minutes: say so before, not only after.
EVALUATING = f"{len(heldout_rows)} held-out snapshots on {n_val} validation and {n_eval} test images"
print(f"mp2_train_stage: measuring the own accuracy of {EVALUATING}", flush=True)
own_val = [trainer.accuracy(heldout_snaps.vectors([i])[0], val_x, val_y) for i in heldout_rows]
own_test = [trainer.accuracy(heldout_snaps.vectors([i])[0], test_x, test_y) for i in heldout_rows]
heldout = [{"index": int(i), **{k: heldout_snaps.records[i].get(k) for k in ("source", "step", "epoch", "test_acc")},
            "val_own_acc": v, "test_own_acc": t} for i, v, t in zip(heldout_rows, own_val, own_test)]


def evaluate(epoch: int, train_loss: float | None, started: float) -> dict:
    """The held-out snapshots' assembled networks next to their own, on validation and test images."""
    row = {"epoch": epoch, "train_loss": train_loss}
    print(f"mp2_train_stage: epoch {epoch}: evaluating the assembled networks of {EVALUATING}", flush=True)
    for part, x, y, own in (("val", val_x, val_y, own_val), ("test", test_x, test_y, own_test)):
        assembled = [trainer.accuracy(trainer.assembled(heldout_snaps.pushed[i]), x, y) for i in heldout_rows]
        a, o = float(np.mean(assembled)), float(np.mean(own))
        row.update({f"{part}_assembled_acc": a, f"{part}_own_acc": o, f"{part}_gap": o - a,
                    f"{part}_assembled_by_snapshot": assembled})
    row["seconds"] = time.monotonic() - started
    return row


BEST_KEYS = ("epoch", "val_assembled_acc", "val_own_acc", "val_gap", "test_assembled_acc", "test_own_acc", "test_gap")


def record(row: dict) -> None:
    """Keep the row; a trained epoch that is the best so far on the validation images becomes
    predictor.npz (atomically replacing any older one); save the resumable state and the report."""
    global best
    rows.append(row)
    if state.improves(row, best):
        chosen = {k: row[k] for k in BEST_KEYS}
        save_checkpoint(str(out / state.BEST), layout, predictor.numpy_weights(), {
            "dataset": dataset.name, "push": args.push, "fit_input": args.fit_input,
            "train_images": args.train_images, "snapshot_dataset": train_snaps.dataset, "snapshot_dirs": snapshot_dirs,
            "holdout_dirs": heldout_dirs, "loss": args.loss, "trained_epochs": row["epoch"],
            "selected_on": "validation", "val_images": n_val, "test_images": n_eval,
            **{k: row[k] for k in BEST_KEYS[1:]},
            "snapshots": len(train_rows), "heldout_snapshots": len(heldout_rows), "seed": args.seed,
        })
        best = chosen  # only once written: a failed write leaves `best` naming the file still there
    if row["epoch"] >= 1:  # the untrained epoch 0 leaves nothing to resume from
        state.save_state(out, predictor.numpy_weights(), trainer.adam.state(), config, row["epoch"], rows, best)
    report = {
        "config": config, "model": model.name, "dataset": dataset.name, "snapshot_dataset": train_snaps.dataset,
        "train_snapshots": len(train_rows), "heldout": heldout, "steps_per_epoch": steps,
        "heldout_recorded_acc": _mean([h["test_acc"] for h in heldout]),
        "selected_on": "validation", "loss_images": len(loss_idx),
        "figures": "val_*: held-out snapshots on the validation images (choose the best epoch); "
                   "test_*: on the test images (reported only)",
        "gap_is": "own_acc - assembled_acc: what prediction costs (negative: it gains)",
        "rows": rows, "best_epoch": None if best is None else best["epoch"], "best": best,
        "checkpoint": None if best is None else str(out / state.BEST),
        "resumed_from_epoch": start_epoch if args.resume else None, "provenance": origin,
    }
    state.write_report(out, report)
    print(f"mp2_train_stage: epoch {row['epoch']}/{args.epochs}"
          + ("" if row["train_loss"] is None else f" loss {row['train_loss']:.4f}")
          + f" held-out assembled vs own: validation {row['val_assembled_acc']:.4f} vs {row['val_own_acc']:.4f}, "
            f"test {row['test_assembled_acc']:.4f} vs {row['test_own_acc']:.4f} {row['seconds']:.1f}s", flush=True)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# --- loop ----------------------------------------------------------------------------------------
aside = state.set_aside(out) if args.fresh else None
if aside:
    print(f"mp2_train_stage: --fresh: the previous training's files are now in {aside} (put back if this run "
          f"ends before its first epoch)", flush=True)


def kept() -> str:
    """What --out holds after a run that stops early, for its last line; puts a set-aside training back
    when this run wrote no predictor of its own."""
    if best is not None:
        return (f"{out / state.BEST} holds this run's best epoch so far ({best['epoch']})"
                + (f"; --resume continues from {out / state.LAST}" if (out / state.LAST).exists() else ""))
    if aside:
        state.put_back(out, aside)
        return f"the previous training's files are back in {out} from {aside.name}"
    return "no predictor was written"


try:
    if not rows:
        record(evaluate(0, None, time.monotonic()))  # the untrained predictor: the control for every epoch
    for epoch in range(start_epoch + 1, args.epochs + 1):
        t0 = time.monotonic()
        rng = np.random.default_rng([args.seed, epoch])  # from (seed, epoch): a resumed run draws the same
        progress = Progress(steps, f"epoch {epoch}/{args.epochs} step")
        loss = training.train_epoch(
            trainer, train_snaps, train_rows, dataset, loss_images=loss_idx, snapshot_batch=args.snapshot_batch,
            image_batches=args.image_batches, image_batch=args.image_batch, mixup=args.mixup, rng=rng,
            on_step=lambda done, value: progress.update(done, {"loss": value}),
        )
        record(evaluate(epoch, loss, t0))
except (FloatingPointError, CheckpointError) as e:
    fail(f"{e}; {kept()}")
except OSError as e:  # a full disk, a folder that stopped being writable
    fail(f"cannot write {e.filename or out} ({e.strerror or e}): free some space or choose another --out; {kept()}")
except KeyboardInterrupt:
    print(f"mp2_train_stage: interrupted; {kept()}", file=sys.stderr, flush=True)
    sys.exit(130)

# --- report --------------------------------------------------------------------------------------
if best is None:
    print(f"mp2_train_stage: no training epoch, so no predictor written; the figures are in {out / state.REPORT_JSON}",
          flush=True)
else:
    print(f"mp2_train_stage: best epoch {best['epoch']} (chosen on validation images): held-out assembled "
          f"{best['val_assembled_acc']:.4f} vs own {best['val_own_acc']:.4f} on validation images, "
          f"{best['test_assembled_acc']:.4f} vs {best['test_own_acc']:.4f} on test images; "
          f"predictor {out / state.BEST}", flush=True)
