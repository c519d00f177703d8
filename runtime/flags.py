"""Flags that the PS and the workers share, and the RunConfig they fix."""
from __future__ import annotations

import argparse

import data
import models
from runtime import cluster
from runtime.config import RunConfig
from runtime.methods import METHODS


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cluster.add_cluster_flags(p)
    g = p.add_argument_group("training (the PS and every worker must agree)")
    g.add_argument("--model", default="lenet5", help=f"one of {', '.join(models.NAMES)}")
    g.add_argument("--dataset", default="fashion_mnist", help=f"one of {', '.join(data.NAMES)}")
    g.add_argument("--data-dir", help="where the dataset's files are (else $MP2_DATA, Debian's, Keras's cache)")
    g.add_argument("--method", default="baseline", choices=sorted(METHODS))
    g.add_argument("--epochs", type=int, default=5)
    g.add_argument("--worker-batch", type=int, default=125, help="images per worker per step")
    g.add_argument("--lr", type=float, default=1e-3, help="local Adam learning rate (decays 0.999 every 50 steps)")
    g.add_argument("--mixup", type=float, default=1.0, help="mixup alpha on worker batches; 0 turns it off")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("runtime")
    g.add_argument("--out", default="runs/latest", help="run directory")
    g.add_argument("--connect-timeout", type=float, default=120, help="seconds to wait for the PS / all workers")
    g.add_argument("--step-timeout", type=float, default=120, help="seconds a step (or an epoch-end evaluation) may take")
    g.add_argument("--threads", type=int, default=1, help="TensorFlow threads in this process (0: TensorFlow decides)")
    return p


def ps_parser(description: str) -> argparse.ArgumentParser:
    """The shared flags plus those only the PS takes."""
    p = parser(description)
    p.add_argument("--predictor", help="predictor checkpoint (.npz from mp2_train_stage.py); required for --method mp2")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved epoch")
    g = p.add_argument_group("collection (stage 1: the parameter dataset for mp2_train_stage.py)")
    g.add_argument("--snapshot-every", type=int, default=0, metavar="K", help="snapshot the model at a random step of every K; 0: off")
    g.add_argument("--snapshot-dir", help="where the snapshots go (default: OUT/snapshots)")
    g.add_argument("--snapshot-eval-images", type=int, default=1000, help="test images each snapshot's accuracy is measured on")
    return p


def split_ps_only(argv: list[str]) -> list[str]:
    """`argv` without the flags (and their values) that only the PS takes: what workers get."""
    shared = {s for a in parser("")._actions for s in a.option_strings}
    takes_value = {s: a.nargs != 0 for a in ps_parser("")._actions for s in a.option_strings}
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in takes_value and name not in shared:
            skip = takes_value[name] and "=" not in arg
            continue
        out.append(arg)
    return out


def run_config(args: argparse.Namespace, model: models.Model, dataset: data.Dataset, workers: int) -> RunConfig:
    return RunConfig(
        model=model.name,
        classes=model.classes,
        fingerprint=model.layout.fingerprint(),
        dataset=dataset.name,
        method=args.method,
        workers=workers,
        worker_batch=args.worker_batch,
        epochs=args.epochs,
        lr=args.lr,
        mixup=args.mixup,
        seed=args.seed,
    )


def load_data_and_model(args: argparse.Namespace) -> tuple[data.Dataset, models.Model]:
    """The dataset (its class count sizes the classifier) and the model built for it."""
    probe = models.get(args.model)  # for the image shape only; validates the name too
    dataset = data.load(args.dataset, args.data_dir, image_shape=probe.input_shape, seed=args.seed)
    return dataset, models.get(args.model, dataset.classes)
