"""MP²'s options as one typed, frozen object whose defaults are the measured online setting.

The defaults are online MP² as measured on Fashion-MNIST (120 steps per epoch, 4 workers of 125
images): the schedule's in results/unseen (stage rounds), the graph rounds' (first-round steps, dense
rank, round lag) and the correction's (--correction-ratio, with --refresh-every 200, which pays for its
bytes) in results/online-rounds, where the first round's 1,500 steps were measured on digits too. Five
are counts of steps or snapshots whose best value depends on how long an epoch is; they are derived from
the run (RunInfo.steps_per_epoch) by one rule:

    value = max(floor, Fashion-MNIST value × steps_per_epoch // 120)

                             Fashion-MNIST (120 steps/epoch)   digits (14 steps/epoch)   floor
    --warmup-snapshots                  30                          3                     3
    --online-snapshot-every              2                          1                     1
    --partial-snapshot-every            50                         20                    20
    --retrain-after                      8                          3                     3
    --round-lag                        100                         11                    10

so both measured settings come out of it (the first four floors are digits' measured values; the lag's
floor keeps a few steps of it beside the training on a short epoch), and a run in between gets the
Fashion-MNIST setting scaled to its epoch. A value given on the command line is taken as given. The
stage's --val-images (1000) is capped at a tenth of the training images when the stage flags are the
default ones (digits: 144), as mp2_train_stage.py caps its own default; the stage caps --eval-images at
the test set itself.

Not a method option, so not here: the pushed group. The measured setting pushes the classifier too
(--push front+head). --push is shared by the PS and every worker, and a worker cannot tell online MP²
from a run whose PS alone holds the predictor file, so online MP² does not change it: pass
--push front+head yourself (the PS says so in one line when it runs online with the classifier
predicted). The measured command is printed by

    python -m runtime.methods mp2 --defaults [--steps-per-epoch N]
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, fields

from runtime.methods.base import RunInfo
from predictor.stage.flags import check_round_flags

REFERENCE_STEPS_PER_EPOCH = 120  # Fashion-MNIST's, where the defaults were measured
DIGITS_STEPS_PER_EPOCH = 14  # digits' (4 workers of 25 images), the other measured setting
# field: (Fashion-MNIST value, floor)
SCALED = {"warmup_snapshots": (30, 3), "online_snapshot_every": (2, 1), "partial_snapshot_every": (50, 20),
          "retrain_after": (8, 3), "round_lag": (100, 10)}
DEFAULT_STAGE_FLAGS = "--epochs 6 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0 --holdout 0.05"
# Shared flags the measured command passes besides the method's defaults (see the docstring for why).
ROUND_KINDS = ("graph", "stage")
MEASURED_SHARED_FLAGS = "--push front+head"
# --correction-ratio's default with --broadcast full and an exchange every step; 0 with subset (its workers predict
# without the PS's correction) or --sync-every H > 1 (measured worse there: results/online-rounds)
CORRECTION_RATIO = 0.005


def derived(name: str, steps_per_epoch: int) -> int:
    """The default of a SCALED option for a run of `steps_per_epoch` steps per epoch."""
    fashion, floor = SCALED[name]
    return max(floor, fashion * steps_per_epoch // REFERENCE_STEPS_PER_EPOCH)


@dataclass(frozen=True)
class MP2Options:
    """Every MP² flag, typed. None in a SCALED field means "derived from the run" (see `for_run`)."""

    predictor: str | None = None
    prediction: str = "predictor"          # or "hold": the control
    sync_every: int = 1                    # H: steps between exchanges; workers train every layer alone between them
    correction_ratio: float | None = None  # Top-k of the predicted group's gradient for the PS's correction; 0: off
    full_push_epochs: int = 0
    broadcast: str = "full"                # or "subset"
    outer_lr: float = 1.0                  # DiLoCo's outer step on the assembled model (1 with momentum 0: none)
    outer_momentum: float = 0.0
    # Online MP² (no --predictor): the PS's alone.
    warmup_snapshots: int | None = None
    online_snapshot_every: int | None = None
    partial_snapshot_every: int | None = None
    retrain_after: int | None = None
    refresh_every: int = 200
    refresh_steps: int = 2
    switch_tolerance: float = 0.02
    check_images: int = 1000
    watch_every: int = 10
    watch_tolerance: float = 0.05
    online_wait: bool = True               # rounds land on the same step under any load; --no-online-wait
    round_lag: int | None = None           # a round started while a predictor is live is taken this many steps later
    online_rounds: str = "graph"           # or "stage": runtime/methods/rounds.py
    first_round_steps: int = 1500          # graph rounds: optimizer steps of the first round (Fashion-MNIST and digits)
    round_steps: int = 300                 # graph rounds: optimizer steps of every later round
    dense_rank: int = 16                   # graph rounds: the predictor's dense heads 64 -> R -> n (0: 64 -> n)
    online_stage_flags: str = DEFAULT_STAGE_FLAGS
    predictor_init: str | None = None
    control_switch_step: int | None = None

    @classmethod
    def from_flags(cls, opts: dict, run: RunInfo) -> "MP2Options":
        """From the parsed method options (None or absent: the default), derived values filled in."""
        given = {f.name: opts[f.name] for f in fields(cls) if opts.get(f.name) is not None}
        return cls(**given).for_run(run.steps_per_epoch)

    def for_run(self, steps_per_epoch: int) -> "MP2Options":
        resolved = {name: derived(name, steps_per_epoch) for name in SCALED if getattr(self, name) is None}
        if self.correction_ratio is None:
            on = self.broadcast == "full" and self.sync_every == 1
            resolved["correction_ratio"] = CORRECTION_RATIO if on else 0.0
        return dataclasses.replace(self, **resolved)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def online(self) -> bool:
        """Online MP²: the PS trains the predictor during the run."""
        return self.prediction == "predictor" and not self.predictor

    @property
    def online_dense_rank(self) -> int | None:
        """The dense-head rank of the predictor online MP² trains (None: the reference's heads): graph rounds
        only, as stage rounds (mp2_train_stage.py) train the reference's heads."""
        return (self.dense_rank or None) if self.online_rounds == "graph" else None

    def stage_flags(self, train_images: int) -> list[str]:
        """The rounds' mp2_train_stage.py flags: the default's --val-images capped at a tenth of the
        training images (a user's own --online-stage-flags are passed as given)."""
        flags = self.online_stage_flags
        if flags == DEFAULT_STAGE_FLAGS:
            cap = max(1, min(1000, train_images // 10))
            flags = re.sub(r"--val-images \d+", f"--val-images {cap}", flags)
        return shlex.split(flags)

    def check(self) -> None:
        """Options that contradict each other: ValueError, one line for the user."""
        if self.prediction not in ("predictor", "hold"):
            raise ValueError(f"--prediction must be predictor or hold, got {self.prediction!r}")
        if self.broadcast not in ("full", "subset"):
            raise ValueError(f"--broadcast must be full or subset, got {self.broadcast!r}")
        if self.online_rounds not in ROUND_KINDS:
            raise ValueError(f"--online-rounds must be {' or '.join(ROUND_KINDS)}, got {self.online_rounds!r}")
        try:
            round_flags = shlex.split(self.online_stage_flags)
        except ValueError as e:  # an unclosed quote
            raise ValueError(f"--online-stage-flags: {e}") from None
        # Parsed as a round's mp2_train_stage.py would, now: a typo would otherwise fail every round, in its log only.
        check_round_flags(round_flags)
        if any(flag.split("=")[0] == "--head-rank" for flag in round_flags):
            raise ValueError("--online-stage-flags: online MP² trains predictors with the reference's rank-one "
                             "heads; drop --head-rank")
        if self.broadcast == "subset" and self.correction_ratio:
            raise ValueError("--broadcast subset: the workers would predict without the PS's correction; "
                             "drop --correction-ratio, or use --broadcast full")
        if self.broadcast == "subset" and (self.outer_lr != 1.0 or self.outer_momentum != 0.0):
            raise ValueError("--outer-lr / --outer-momentum with --broadcast subset: the workers assemble the model "
                             "themselves and would not take the PS's outer step; use --broadcast full")
        if self.broadcast == "subset" and self.prediction == "hold":
            raise ValueError("--broadcast subset needs a predictor on the workers; the control (--prediction hold) has none")
        if self.predictor_init and (self.predictor or self.prediction == "hold"):
            raise ValueError("--predictor-init is online MP²'s warm start: drop --predictor (a fixed predictor "
                             "needs no start) and --prediction hold (the control has no predictor)")
        if self.control_switch_step is not None and self.prediction != "hold":
            raise ValueError("--control-switch-step gives the control (--prediction hold) online MP²'s schedule: "
                             "add --prediction hold, or drop it")


def default_help(name: str) -> str:
    """The help text's note on a derived default."""
    fashion, floor = SCALED[name]
    return (f"; default: {fashion} × steps per epoch / {REFERENCE_STEPS_PER_EPOCH}, at least {floor} "
            f"(Fashion-MNIST's {fashion}, digits' {derived(name, DIGITS_STEPS_PER_EPOCH)})")


def measured_command(steps_per_epoch: int = REFERENCE_STEPS_PER_EPOCH) -> str:
    """The online settings the defaults give a run of `steps_per_epoch`, as flags: what the README shows."""
    o = MP2Options().for_run(steps_per_epoch)
    flags = [f"--{name.replace('_', '-')} {getattr(o, name)}" for name in
             ("warmup_snapshots", "online_snapshot_every", "partial_snapshot_every", "retrain_after",
              "refresh_every", "refresh_steps", "switch_tolerance", "watch_tolerance", "online_rounds",
              "first_round_steps", "round_steps", "round_lag", "dense_rank", "correction_ratio")]
    return " ".join(["--method mp2", MEASURED_SHARED_FLAGS, *flags])
