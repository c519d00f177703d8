"""Flags that the PS and the workers share, the RunConfig they fix, and the method they build."""
from __future__ import annotations

import argparse

import data
import data.flags
import data.loader
import data.validation
import models
from helpers import argtypes
from runtime import cluster
from runtime.config import RunConfig
from runtime.methods import METHODS, Method, Options, PSContext, RunInfo, all_options, build
from runtime.presets import DEFAULT as DEFAULT_PRESET, PRESETS, epochs_of
from runtime.shards import plan


# The shared flags a preset decides when they are not given. "measured": the setting the tuned frontier
# measured best on the main task (results/frontier: 30 epochs; no mixup; each method's rate, Method.default_lr;
# MP² pushing the classifier too); "paper": the MP² reference's worker settings (5 epochs; lr 1e-3, or DGC's
# 0.05; mixup 1; the front layers pushed). runtime/presets.py says why 30 epochs.


class TrainingParser(argparse.ArgumentParser):
    """The PS's and a worker's flags; after parsing, --preset fills --epochs, --lr, --mixup and --push where not given."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        if getattr(namespace, "preset", None) is not None:
            apply_preset(namespace)
        return namespace, extra


def apply_preset(args: argparse.Namespace) -> None:
    method = METHODS[args.method]
    measured = args.preset == "measured"
    if args.epochs is None:
        args.epochs = epochs_of(args.preset)
    if args.lr is None:
        args.lr = method.default_lr if measured else method.paper_lr
    if args.mixup is None:
        args.mixup = 0.0 if measured else 1.0
    if args.push is None:
        args.push = "front+head" if measured and args.method == "mp2" else "front"


def parser(description: str) -> argparse.ArgumentParser:
    p = TrainingParser(allow_abbrev=False, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cluster.add_cluster_flags(p)
    g = p.add_argument_group("training (the PS and every worker must agree)")
    g.add_argument("--model", default="lenet5", help=f"one of {', '.join(models.NAMES)}")
    g.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET,
                   help="what --epochs, --lr, --mixup and --push are when not given: measured (the best measured setting "
                        "on LeNet-5 / Fashion-MNIST, results/frontier: 30 epochs, each method's tuned rate, no mixup, MP² "
                        "pushing the classifier too) or paper (the MP² reference's: 5 epochs, lr 1e-3, mixup 1, the front "
                        "layers)")
    g.add_argument("--push", default=None, help=models.PUSH_HELP + " (default: the preset's)%(default).0s")
    data.flags.add_flags(g)
    g.add_argument("--validation-images", type=argtypes.nonnegative_int, default=None, metavar="N",
                   help="training images held out (a fixed split, never trained on) that the PS measures every "
                        "epoch to choose one without looking at the test set; default: one in "
                        f"{data.validation.FRACTION} (5,000 of Fashion-MNIST's 60,000); 0: none%(default).0s")
    g.add_argument("--method", default="baseline", choices=sorted(METHODS),
                   help="; ".join(f"{name}: {m.summary}" for name, m in METHODS.items()))
    g.add_argument("--epochs", type=argtypes.positive_int, default=None,
                   help="passes over the training images (default: the preset's, measured "
                        f"{epochs_of('measured')}, paper {epochs_of('paper')})%(default).0s")
    g.add_argument("--worker-batch", type=argtypes.positive_int, default=125, help="images per worker per step")
    g.add_argument("--lr", type=argtypes.positive_float, default=None,
                   help="learning rate (decays 0.999 every 50 steps); default: the method's measured one "
                        + ", ".join(f"{n} {m.default_lr:g}" for n, m in METHODS.items()) + " (--preset paper: 1e-3, dgc 0.05)%(default).0s")
    g.add_argument("--mixup", type=argtypes.nonnegative_float, default=None,
                   help="mixup alpha on worker batches; 0 turns it off (default: the preset's, measured 0, paper 1)%(default).0s")
    g.add_argument("--seed", type=argtypes.nonnegative_int, default=0)
    g.add_argument("--verify-sync", action="store_true",
                   help="every step, check that each worker's model equals the PS's bit for bit (a digest rides in the reply)")
    g.add_argument("--chunks", type=argtypes.positive_int, default=1, metavar="C",
                   help="cut each PS task's part of an exchange into C pieces of whole tensors: a worker sends them in "
                        "turn and takes the replies while it still sends, so both directions of the PS's link are busy "
                        "at once (every method; MP² and the WNN on their averaging steps only; docs/design/architecture.md)")
    add_method_options(p)
    g = p.add_argument_group("runtime")
    g.add_argument("--trace-steps", type=argtypes.nonnegative_int, default=0, metavar="N",
                   help="workers record their first N steps (trained model, payload, reply) in OUT/trace-worker-I.npz")
    g.add_argument("--out", default="runs/latest", help="run directory")
    g.add_argument("--connect-timeout", type=argtypes.positive_float, default=120, help="seconds to wait for the PS / all workers")
    g.add_argument("--step-timeout", type=argtypes.positive_float, default=120, help="seconds a step (or an epoch-end evaluation) may take")
    g.add_argument("--threads", type=argtypes.nonnegative_int, default=1, help="threads each TensorFlow op may use in this process (0: TensorFlow decides)")
    return p


def add_method_options(p: argparse.ArgumentParser) -> None:
    """One section per method, generated from its options dataclass (name, type, default, help). A flag several
    methods take is listed in the first one's section, with each method's help and default."""
    owners_of = all_options()
    registered: set[str] = set()
    for name, method in METHODS.items():
        described = method.Options.described()
        if not described:
            continue
        shared = [o.flag for o in described if o.flag in registered]
        g = p.add_argument_group(f"--method {name} ({method.Options.__name__})",
                                 f"also takes {', '.join(shared)} (above)" if shared else None)
        for option in described:
            if option.flag in registered:
                continue
            registered.add(option.flag)
            owners = owners_of[option.flag]
            if len(owners) == 1:
                text = option.help + _default_note(option.default)
            else:
                text = "; ".join(f"[{n}] {o.help}{_default_note(o.default)}" for n, o in owners)
            # A switch: --flag and --no-flag (a default of True must be possible to turn off).
            kind = {"action": argparse.BooleanOptionalAction} if option.type is bool else {"type": option.type}
            g.add_argument(option.flag, **kind, default=None, dest=option.dest,
                           help=text.replace("%", "%%") + "%(default).0s")


def _default_note(default: object) -> str:
    """' (default: X)', or nothing for None: such an option's help says what its absence means."""
    return "" if default is None else f" (default: {default})"


CHECKPOINT_EVERY = 100  # steps: a save costs 0.5 % of LeNet-5's 100 steps, 0.14 % of ResNet-18's (results/reliability)


def ps_parser(description: str) -> argparse.ArgumentParser:
    """The shared flags plus those only the PS takes."""
    p = parser(description)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--fresh", action="store_true", help="--out holds an earlier run: move its records into "
                   "OUT/replaced-<time>/ and start afresh (without it, such an --out is refused)")
    p.add_argument("--checkpoint-every", type=argtypes.nonnegative_int, default=CHECKPOINT_EVERY, metavar="N",
                   help="save the run (the PS's checkpoint and each worker's state) after the first exchanging step "
                        "at or past every N-th step too, not only at epoch ends, so that a resume redoes little; 0: "
                        "epoch ends only")
    g = p.add_argument_group("collection (stage 1: the parameter dataset for mp2_train_stage.py)")
    g.add_argument("--snapshot-every", type=argtypes.nonnegative_int, default=0, metavar="K", help="snapshot the model at a random step of every K; 0: off")
    g.add_argument("--snapshot-regular", action="store_true",
                   help="snapshot at the last step of every K instead (even spacing, what mp2_train_wnn.py needs)")
    g.add_argument("--snapshot-dir", help="where the snapshots go (default: OUT/snapshots)%(default).0s")
    g.add_argument("--snapshot-eval-images", type=argtypes.positive_int, default=1000, help="test images each snapshot's accuracy is measured on")
    return p


def ps_only_flags() -> set[str]:
    """Flags the PS takes and workers do not (PS-only method options included)."""
    shared = {s for a in parser("")._actions for s in a.option_strings}
    ps = {s for a in ps_parser("")._actions for s in a.option_strings}
    method_ps_only = {name for flag, owners in all_options().items()
                      if all(o.ps_only and not o.workers_may_read for _, o in owners)
                      for name in ([flag, "--no-" + flag[2:]] if owners[0][1].type is bool else [flag])}
    return (ps - shared) | method_ps_only


def value_table() -> dict[str, bool]:
    """Every flag the PS takes, and whether it takes a value (runtime/cmdline.py's table)."""
    return {s: a.nargs != 0 and not isinstance(a, argparse._StoreConstAction)
            for a in ps_parser("")._actions for s in a.option_strings}


def method_options(args: argparse.Namespace) -> Options:
    """The chosen method's typed options, built once from the flags: given values, else its defaults; another
    method's option is an error."""
    chosen = METHODS[args.method].Options
    mine = {o.dest for o in chosen.described()}
    for flag, owners in all_options().items():
        dest = owners[0][1].dest
        if dest not in mine and getattr(args, dest, None) is not None:
            raise ValueError(f"{flag} is an option of {', '.join(n for n, _ in owners)}, not of --method {args.method}")
    return chosen.from_flags({dest: getattr(args, dest, None) for dest in mine})


def ps_context(args: argparse.Namespace) -> PSContext:
    """What a method preparing the PS may know of the run's flags."""
    data_flags = ["--dataset", args.dataset] + (["--data-dir", args.data_dir] if args.data_dir else [])
    data_flags += (["--fit-input"] if args.fit_input else []) + (
        ["--train-images", str(args.train_images)] if args.train_images else [])
    return PSContext(out=args.out, model=args.model, push=args.push, data_flags=tuple(data_flags), seed=args.seed,
                     step_timeout=args.step_timeout, resume=bool(getattr(args, "resume", False)))


def build_method(args: argparse.Namespace, model: models.Model, workers: int, steps_per_epoch: int) -> Method:
    opts = method_options(args)
    lr = args.lr if args.lr is not None else METHODS[args.method].default_lr
    return build(args.method, model.layout, opts, RunInfo(workers, steps_per_epoch, args.epochs, lr, args.seed))


def precheck(argv: list[str], ps_tasks: int = 1) -> None:
    """The mistakes a launcher can find in a second, before it starts any process: flags, model, pushed
    group, the method's options and files, a partition over `ps_tasks` PS tasks. Raises ValueError, DataError
    or CheckpointError (one line); argparse exits with its own message. The PS and the workers check everything
    again."""
    args = ps_parser("").parse_args(argv)
    model = models.get(args.model, data.loader.class_count(args.dataset), push=args.push)
    method = build_method(args, model, workers=1, steps_per_epoch=1)
    method.precheck()
    plan(model.layout, method, ps_tasks, args.chunks)


def run_config(args: argparse.Namespace, model: models.Model, dataset: data.Dataset, workers: int,
               method: Method, ps_tasks: int = 1) -> RunConfig:
    return RunConfig(
        model=model.name,
        classes=model.classes,
        fingerprint=model.layout.fingerprint(),
        push=model.layout.pushed_layers(),
        dataset=dataset.name,
        fit_input=args.fit_input,
        train_images=args.train_images,
        validation_images=len(dataset.val_y),
        method=args.method,
        method_options=method.handshake_options(),
        workers=workers,
        worker_batch=args.worker_batch,
        epochs=args.epochs,
        lr=method.run.lr,
        mixup=args.mixup,
        seed=args.seed,
        verify_sync=args.verify_sync,
        ps_tasks=ps_tasks,
        chunks=args.chunks,
    )


def load_data_and_model(args: argparse.Namespace) -> tuple[data.Dataset, models.Model]:
    """The dataset (its class count sizes the classifier) and the model built for it."""
    probe = models.get(args.model)  # for the image shape only; validates the name too
    dataset = data.flags.from_args(args, probe.input_shape, args.seed)
    if hasattr(args, "validation_images"):  # a training run's PS or worker (the stage and the WNN choose their own)
        dataset = data.validation.hold_out(dataset, args.validation_images)
    return dataset, models.get(args.model, dataset.classes, push=args.push)
