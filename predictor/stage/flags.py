"""mp2_train_stage.py's flags, importable without TensorFlow: the script parses its command line with
`build_parser()`, the PS checks --online-stage-flags with `check_round_flags` before any cluster forms,
and the pipeline compares a predictor's recorded settings with its own run's through `mismatches`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import data.flags
from helpers import argtypes

LOSSES = ("result", "mse")
DEFAULT_HOLDOUT = 0.2
DEFAULT_VAL_IMAGES = 5000  # or a tenth of the training set when that is fewer

DESCRIPTION = """MP² stage 2: train the predictor (pushed group -> predicted group) from a parameter dataset.

    python mp2_train_stage.py --model lenet5 --dataset fashion_mnist --snapshots runs/collect/snapshots

The default loss is the method's own, prediction-result based: the target network is assembled from a
snapshot's pushed group and the predictor's output, and its cross-entropy on (mixup) training images
trains the predictor.

What is held out, and what each figure is for:
  snapshots  the last --holdout fraction of the snapshots by global step (a contiguous stretch at the
             end of the trajectory, never a random pick among near-identical neighbours), or, with
             --holdout-snapshots, another run's snapshots (then every --snapshots one trains);
  images     --val-images validation images, set apart from the training images (the last N of a
             fixed seeded permutation) and never in the loss's mini-batches; the test images are
             never used for training or for choosing.
Each epoch the held-out snapshots' assembled networks are tested next to the snapshots' own
parameters, on the validation images (val_*: this chooses the best epoch) and on the test images
(test_*: reported only). The best epoch's predictor (by validation assembled accuracy) is kept as
<out>/predictor.npz, for mp2_ps.py --method mp2 --predictor; it is written only once an epoch of
training is done. <out>/report.json and report.csv hold the per-epoch figures (epoch 0: the
untrained predictor) and describe the predictor.npz beside them.

An --out that already holds a predictor.npz is never replaced by accident: --resume continues its
training; --fresh moves the previous training's files (predictor.npz, report.json, report.csv,
last.npz) into <out>/replaced-<time>/, as mp2_ps.py --fresh does with an earlier run's records, and
trains a new one (the files go back if the new run ends before its first epoch); otherwise the run
is refused. --epochs 0 (only evaluate) there is
refused too: it would leave a report that does not describe the predictor beside it.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="mp2_train_stage", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet5", help="the target model the snapshots are of")
    parser.add_argument("--push", default="front",
                        help="the collection run's pushed group: front, front+head, all, or layer names")
    data.flags.add_flags(parser)  # --dataset, --data-dir, --fit-input, --train-images: the collection run's
    parser.add_argument("--snapshots", nargs="+", required=True, metavar="DIR", help="parameter-dataset directories (one or several)")
    parser.add_argument("--out", help="output directory (default predictors/<model>-<dataset>)")
    parser.add_argument("--epochs", type=argtypes.nonnegative_int, default=6,
                        help="passes over the training snapshots (0: only evaluate the untrained predictor; no predictor.npz)")
    parser.add_argument("--loss", choices=LOSSES, default="result",
                        help="result: cross-entropy of the assembled network (the method's); mse: regress the true predicted group")
    parser.add_argument("--head-rank", type=argtypes.positive_int, default=1, metavar="R",
                        help="rank of the predictor's conv decoder heads: 1 (default) is the reference's one 1x1 conv of the "
                             "64 hidden units; R > 1 gives each predicted conv layer its own projection of them to an 8x8 x R map first")
    parser.add_argument("--dense-rank", type=argtypes.positive_int, default=None, metavar="R",
                        help="the dense heads' bottleneck: 64 hidden units -> R -> each predicted dense layer's values "
                             "(default: none, the reference's 64 -> n, whose size grows with the layer's); online MP² uses 16")
    parser.add_argument("--max-predictor-weights", type=argtypes.positive_int, default=50_000_000, metavar="N",
                        help="refuse to build a predictor of more weights (a 4096x4096 dense layer needs about a billion "
                             "without --dense-rank)")
    parser.add_argument("--image-batches", type=argtypes.positive_int, default=40, help="optimizer steps (fresh image mini-batches) per snapshot batch")
    parser.add_argument("--image-batch", type=argtypes.positive_int, default=125, help="images per mini-batch")
    parser.add_argument("--snapshot-batch", type=argtypes.positive_int, default=1, help="snapshots per predictor step (their losses are averaged)")
    parser.add_argument("--lr", type=argtypes.positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--lr-warmup", type=argtypes.nonnegative_int, metavar="STEPS",
                        help="the learning rate rises linearly over the first STEPS steps (default: one epoch's steps "
                             "with --init, so fresh Adam's first full-size steps do not undo the given predictor; else 0)")
    parser.add_argument("--mixup", type=argtypes.nonnegative_float, default=1.0, help="mixup alpha on the image mini-batches; 0 turns it off")
    parser.add_argument("--holdout", type=argtypes.fraction,
                        help=f"fraction in (0, 1) of the snapshots held out: the last ones by global step, at least 1 "
                             f"(default {DEFAULT_HOLDOUT}; not with --holdout-snapshots)")
    parser.add_argument("--holdout-snapshots", nargs="+", metavar="DIR",
                        help="hold out these parameter-dataset directories (e.g. another run's) instead; "
                             "then every --snapshots snapshot trains")
    parser.add_argument("--val-images", type=argtypes.positive_int,
                        help=f"training images set apart to choose the best epoch on, never in the loss "
                             f"(default {DEFAULT_VAL_IMAGES}, or a tenth of the training set when fewer)")
    parser.add_argument("--eval-images", type=argtypes.positive_int,
                        help="test images for the reported held-out figures (default: all); they never choose")
    parser.add_argument("--seed", type=argtypes.nonnegative_int, default=0,
                        help="predictor init, test-image sample, image order and mixup (and the synthetic data)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.npz (same settings; --epochs may grow)")
    parser.add_argument("--fresh", action="store_true",
                        help="train a new predictor in an --out that holds one: the previous training's files move into "
                             "<out>/replaced-<time>/ (and back if this run ends before its first epoch)")
    parser.add_argument("--init", metavar="PREDICTOR",
                        help="start from this predictor's weights (a checkpoint or a stage output directory, e.g. one "
                             "trained on another dataset) instead of a fresh initialisation; not with --resume")
    parser.add_argument("--threads", type=argtypes.nonnegative_int, default=1, help="TensorFlow threads (0: TensorFlow decides)")
    parser.add_argument("--cross-dataset", action="store_true", help="allow images of another dataset than the snapshots were collected on")
    return parser


def check(args: argparse.Namespace) -> None:
    """The flags that exclude each other (ValueError: one line for the user)."""
    if args.init and args.resume:
        raise ValueError("--init and --resume exclude each other: a resumed run continues from <out>/last.npz; drop --init")
    if args.fresh and args.resume:
        raise ValueError("--fresh and --resume exclude each other: --resume continues the predictor in --out, "
                         "--fresh trains a new one in its place; drop one")
    if args.holdout is not None and args.holdout_snapshots:
        raise ValueError("--holdout and --holdout-snapshots exclude each other: a held-out run trains nothing away; "
                         "drop --holdout")
    if not args.holdout_snapshots and args.holdout == 0:
        raise ValueError("--holdout 0 holds nothing out to evaluate on: give a fraction in (0, 1), or --holdout-snapshots DIR")
    training = {str(Path(d).resolve()) for d in args.snapshots}
    both = sorted(training & {str(Path(d).resolve()) for d in args.holdout_snapshots or []})
    if both:
        raise ValueError(f"{both[0]} is in both --snapshots and --holdout-snapshots; a snapshot either trains or is held out")


def parse(argv: list[str]) -> argparse.Namespace:
    """`argv` parsed and checked as mp2_train_stage.py would, without running it; ValueError instead of
    argparse's exit, with argparse's own message."""
    parser = build_parser()

    def refuse(message: str) -> None:
        raise ValueError(message)

    parser.error = refuse  # argparse reports every bad flag through error()
    args = parser.parse_args(argv)
    check(args)
    return args


# What the PS gives every online round itself (runtime/methods/online.py): a round given them again
# would read other snapshots, write where the PS does not look, or resume a directory that is new.
_ROUND_DECIDES = ("model", "push", "dataset", "data_dir", "fit_input", "train_images", "snapshots", "out",
                  "init", "resume", "fresh")
_PLACEHOLDER = "<the run's snapshots>"


def check_round_flags(argv: list[str]) -> None:
    """--online-stage-flags (split) as an online round would pass them to mp2_train_stage.py; ValueError
    naming the bad flag, raised when the PS starts instead of in a round's log mid-run."""
    if any(a.split("=", 1)[0] in ("-h", "--help") for a in argv):
        raise ValueError("--online-stage-flags: --help is not a flag for a training round "
                         "(python mp2_train_stage.py --help lists the flags)")
    parser = build_parser()
    try:
        args = parse(["--snapshots", _PLACEHOLDER, *argv])
    except ValueError as e:
        raise ValueError(f"--online-stage-flags: {e} (python mp2_train_stage.py --help lists the flags)") from None
    decided = [name for name in _ROUND_DECIDES
               if getattr(args, name) != ([_PLACEHOLDER] if name == "snapshots" else parser.get_default(name))]
    if decided:
        names = ", ".join("--" + n.replace("_", "-") for n in decided)
        raise ValueError(f"--online-stage-flags: {names} {'is' if len(decided) == 1 else 'are'} the PS's to give "
                         f"each round (the PS's own flags set them); drop {'it' if len(decided) == 1 else 'them'}")
    if args.epochs == 0:
        raise ValueError("--online-stage-flags: --epochs 0 trains no predictor, so no round could ever pass; "
                         "give at least 1")


# The report's config entries a reused predictor must share with the run that would train it anew, and
# how to resolve the flags that default to None. Entries a flag left at None and that depend on the data
# (--val-images, --eval-images, --lr-warmup) are compared only when the run gives them.
_REUSE_KEYS = ("dataset", "push", "fit_input", "train_images", "seed", "epochs", "loss", "head_rank", "dense_rank",
               "image_batches", "image_batch", "snapshot_batch", "lr", "mixup", "holdout", "holdout_snapshots",
               "val_images", "eval_images", "lr_warmup", "init", "cross_dataset")
_DATA_DEPENDENT = ("val_images", "eval_images", "lr_warmup")
# What a report written before an entry existed meant by its absence.
_BEFORE_RECORDED = {"head_rank": 1, "dense_rank": None, "init": None, "holdout_snapshots": [], "push": "front", "fit_input": False}


def mismatches(saved: dict, argv: list[str]) -> list[tuple[str, object, object]]:
    """(flag, recorded value, value now) for each setting of a stage output's report config (`saved`)
    that the command line `argv` of mp2_train_stage.py would set otherwise; ValueError for a bad `argv`."""
    args = parse(argv)
    now = {key: getattr(args, key) for key in _REUSE_KEYS}
    now["holdout"] = None if args.holdout_snapshots else (DEFAULT_HOLDOUT if args.holdout is None else args.holdout)
    now["holdout_snapshots"] = [str(Path(d).resolve()) for d in args.holdout_snapshots or []]
    now["init"] = args.init and str(Path(args.init).resolve())
    recorded = {**_BEFORE_RECORDED, **saved}
    return [("--" + key.replace("_", "-"), recorded.get(key), value) for key, value in now.items()
            if recorded.get(key) != value and not (key in _DATA_DEPENDENT and value is None)]
