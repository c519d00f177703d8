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
from a run whose PS alone holds the predictor file, so the shared flags' preset sets it (--preset
measured, the default, gives --method mp2 front+head; runtime/flags.py), not this class; the PS says in
one line when it runs online with the classifier predicted. The measured command is printed by

    python -m runtime.methods mp2 --defaults [--steps-per-epoch N]
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass

from helpers import argtypes
from predictor.stage.flags import check_round_flags
from runtime.methods.options import Options, option

REFERENCE_STEPS_PER_EPOCH = 120  # Fashion-MNIST's, where the defaults were measured
DIGITS_STEPS_PER_EPOCH = 14  # digits' (4 workers of 25 images), the other measured setting
# field: (Fashion-MNIST value, floor)
SCALED = {"warmup_snapshots": (30, 3), "online_snapshot_every": (2, 1), "partial_snapshot_every": (50, 20),
          "retrain_after": (8, 3), "round_lag": (100, 10)}
DEFAULT_STAGE_FLAGS = "--epochs 6 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0 --holdout 0.05"
# Shared flags the measured command passes besides the method's defaults (see the docstring for why).
ROUND_KINDS = ("graph", "stage")
PUSH_CODECS = ("dense", "sparseloco")
MEASURED_SHARED_FLAGS = "--push front+head"
# --correction-ratio's default with --broadcast full and an exchange every step; 0 with subset (its workers predict
# without the PS's correction) or --sync-every H > 1 (measured worse there: results/online-rounds)
CORRECTION_RATIO = 0.005


def derived(name: str, steps_per_epoch: int) -> int:
    """The default of a SCALED option for a run of `steps_per_epoch` steps per epoch."""
    fashion, floor = SCALED[name]
    return max(floor, fashion * steps_per_epoch // REFERENCE_STEPS_PER_EPOCH)


def default_help(name: str) -> str:
    """The help text's note on a derived default."""
    fashion, floor = SCALED[name]
    return (f"; default: {fashion} × steps per epoch / {REFERENCE_STEPS_PER_EPOCH}, at least {floor} "
            f"(Fashion-MNIST's {fashion}, digits' {derived(name, DIGITS_STEPS_PER_EPOCH)})")


@dataclass(frozen=True)
class MP2Options(Options):
    """Every MP² flag, typed. None in a SCALED field (and in --correction-ratio) means "derived from the run" (see
    `for_run`); the method runs with the derived values, and records them."""

    predictor: str | None = option(
        None, "predictor checkpoint (.npz, or the directory of mp2_train_stage.py's output); without it, online MP²: "
        "the PS trains the predictor during the run. With --broadcast subset a worker given the same file reads it "
        "instead of receiving the weights", ps_only=True, workers_may_read=True)
    prediction: str = option("predictor", "predictor: the trained predictor fills the predicted group; hold: the "
                             "control run, which keeps it at its last fully pushed value")
    full_push_epochs: int = option(0, "the last K epochs push the whole model", argtypes.nonnegative_int)
    sync_every: int = option(1, "steps between exchanges (H): between them every worker trains all its layers alone "
                             "with its local Adam; every H-th step and the last of each epoch exchange (push the pushed "
                             "group, or everything on full steps; the PS predicts the rest). Online MP²'s schedule then "
                             "counts exchanges, not steps", argtypes.positive_int)
    correction_ratio: float | None = option(
        None, "on partial steps every worker also sends this fraction of each predicted tensor's gradient (Top-k with "
        "error feedback); the PS learns from them a correction it adds to every prediction; 0: off (the paper's MP²). "
        f"Default: {CORRECTION_RATIO} with --broadcast full and --sync-every 1; 0 with subset (its workers predict "
        "without the PS's correction) or a sync interval (about a point worse there, by best test epoch: "
        "results/online-rounds)", argtypes.fraction)
    outer_lr: float = option(1.0, "DiLoCo's outer step on the model the PS assembles (the averaged pushed group and "
                             "the prediction) at each exchange: θ ← θ − lr·(g + μ·v), g = θ − assembled (1 with momentum "
                             "0: the assembled model itself, MP² as published)", argtypes.positive_float)
    outer_momentum: float = option(0.0, "DiLoCo's outer Nesterov momentum μ", argtypes.fraction)
    broadcast: str = option("full", "full: the PS sends the whole model back; subset: only the averaged pushed group, "
                            "and each worker predicts the rest with the same predictor")
    push_codec: str = option("dense", "how the pushed group goes up at an exchange. dense: its float32 values (MP² as "
                             "published); sparseloco: SparseLoCo's way, the chunk-wise Top-k of the worker's error-fed "
                             "pseudo-gradient of the pushed group in 2 bits, the PS moving the pushed group by the mean "
                             "of the sent entries before it predicts the rest (needs --broadcast full)")
    push_error_decay: float = option(0.95, "--push-codec sparseloco: the error buffer's decay per exchange (β; "
                                     "SparseLoCo's 0.95)", argtypes.fraction)
    push_top_k: int = option(128, "--push-codec sparseloco: entries sent of each 64×64 chunk (SparseLoCo's 128)",
                             argtypes.int_in(1, 64 * 64))
    # Online MP² (no --predictor): the PS decides every phase, so these are the PS's alone.
    warmup_snapshots: int | None = option(None, "online: snapshots before the first predictor is trained"
                                          + default_help("warmup_snapshots"), argtypes.positive_int, ps_only=True)
    online_snapshot_every: int | None = option(None, "online: a warm-up snapshot every K full steps"
                                               + default_help("online_snapshot_every"), argtypes.positive_int,
                                               ps_only=True)
    partial_snapshot_every: int | None = option(
        None, "online: also snapshot the PS's model every K partial steps (its pushed group is the workers' average; "
        "the result loss reads nothing else), so the predictor keeps learning between refresh windows at no traffic; "
        "0: off" + default_help("partial_snapshot_every"), argtypes.nonnegative_int, ps_only=True)
    retrain_after: int | None = option(None, "online: retrain the predictor after this many new snapshots"
                                       + default_help("retrain_after"), argtypes.positive_int, ps_only=True)
    refresh_every: int = option(200, "online: a window of full pushes starts every R steps (a fresh snapshot and the "
                                "check at its end)", argtypes.int_at_least(2), ps_only=True)
    refresh_steps: int = option(2, "online: full steps in each refresh window", argtypes.positive_int, ps_only=True)
    switch_tolerance: float = option(0.02, "online: the predictor passes while its assembled accuracy is at most this "
                                     "below the fully pushed model's (on validation images from the training set)",
                                     argtypes.float_in(0.0, 1.0), ps_only=True)
    check_images: int = option(1000, "online: validation images the check uses", argtypes.positive_int, ps_only=True)
    watch_every: int = option(10, "online: every K partial steps the PS measures the live model on the check images; "
                              "a drop of more than --watch-tolerance below the last fully pushed model's accuracy sends "
                              "the workers back to full pushes", argtypes.positive_int, ps_only=True)
    watch_tolerance: float = option(0.05, "online: see --watch-every", argtypes.float_in(0.0, 1.0), ps_only=True)
    online_wait: bool = option(True, "online: hold the step barrier while a predictor round trains (the stall is "
                               "measured), so a round lands on the same step under any load; --no-online-wait lets the "
                               "workers go on with full pushes meanwhile", bool, ps_only=True)
    round_lag: int | None = option(
        None, "online: a round started while a predictor is live trains beside the training and is taken this many "
        "steps after it starts (with --online-wait the barrier waits there only if the round is late, so it still "
        "lands on the same step under any load); 0: taken at once. The first round, and one started while the "
        "workers fall back to full pushes, are taken at once" + default_help("round_lag"), argtypes.nonnegative_int,
        ps_only=True)
    online_rounds: str = option("graph", "online: where a predictor round trains. graph: in the PS, continuing the "
                                "last predictor that passed for a bounded number of optimizer steps; stage: an "
                                "mp2_train_stage.py process per round, epochs over every snapshot (--online-stage-flags)",
                                ps_only=True)
    first_round_steps: int = option(1500, "online, graph rounds: optimizer steps of the first round (one snapshot and "
                                    "64 images each; measured on Fashion-MNIST and digits)", argtypes.positive_int,
                                    ps_only=True)
    round_steps: int = option(300, "online, graph rounds: optimizer steps of each later round, continuing the last "
                              "predictor that passed", argtypes.positive_int, ps_only=True)
    dense_rank: int = option(16, "online, graph rounds: the predictor decodes each predicted dense layer of n values "
                             "through its own R-value bottleneck (64 -> R -> n: R·(64 + n) weights instead of 64·n, so "
                             "a round's step costs less); 0: the reference's heads (64 -> n). With --broadcast subset "
                             "the workers build the same predictor: give them the same value", argtypes.int_in(0, 63))
    online_stage_flags: str = option(DEFAULT_STAGE_FLAGS, "online, stage rounds: flags for mp2_train_stage.py (the "
                                     "default's --val-images is capped at a tenth of the training images)", ps_only=True)
    predictor_init: str | None = option(
        None, "online: a warm start from this predictor (e.g. one trained on another dataset): checked at the first "
        "warm-up snapshot, live at once if it passes, and the training rounds start from it (then from the last "
        "predictor that passed)", ps_only=True)
    control_switch_step: int | None = option(
        None, "the control (--prediction hold) on online MP²'s schedule: the full pushes of an MP² run whose switch "
        "event names this step, then the refresh windows (--refresh-every, --refresh-steps)", argtypes.nonnegative_int,
        ps_only=True)

    def for_run(self, steps_per_epoch: int) -> "MP2Options":
        resolved = {name: derived(name, steps_per_epoch) for name in SCALED if getattr(self, name) is None}
        if self.correction_ratio is None:
            on = self.broadcast == "full" and self.sync_every == 1
            resolved["correction_ratio"] = CORRECTION_RATIO if on else 0.0
        return dataclasses.replace(self, **resolved)

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
        if self.push_codec not in PUSH_CODECS:
            raise ValueError(f"--push-codec must be {' or '.join(PUSH_CODECS)}, got {self.push_codec!r}")
        if self.push_codec == "sparseloco" and self.broadcast != "full":
            raise ValueError("--push-codec sparseloco with --broadcast subset: the workers would need every version "
                             "of the predictor (its weights outweigh the pushes many times); use --broadcast full")
        if self.push_codec == "sparseloco" and (self.outer_lr != 1.0 or self.outer_momentum != 0.0):
            raise ValueError("--push-codec sparseloco takes SparseLoCo's outer step (rate 1, the error buffer in place "
                             "of momentum); drop --outer-lr / --outer-momentum")
        if self.broadcast == "subset" and self.prediction == "hold":
            raise ValueError("--broadcast subset needs a predictor on the workers; the control (--prediction hold) has none")
        if self.predictor_init and (self.predictor or self.prediction == "hold"):
            raise ValueError("--predictor-init is online MP²'s warm start: drop --predictor (a fixed predictor "
                             "needs no start) and --prediction hold (the control has no predictor)")
        if self.control_switch_step is not None and self.prediction != "hold":
            raise ValueError("--control-switch-step gives the control (--prediction hold) online MP²'s schedule: "
                             "add --prediction hold, or drop it")


def measured_command(steps_per_epoch: int = REFERENCE_STEPS_PER_EPOCH) -> str:
    """The online settings the defaults give a run of `steps_per_epoch`, as flags: what the README shows."""
    o = MP2Options().for_run(steps_per_epoch)
    flags = [f"--{name.replace('_', '-')} {getattr(o, name)}" for name in
             ("warmup_snapshots", "online_snapshot_every", "partial_snapshot_every", "retrain_after",
              "refresh_every", "refresh_steps", "switch_tolerance", "watch_tolerance", "online_rounds",
              "first_round_steps", "round_steps", "round_lag", "dense_rank", "correction_ratio")]
    return " ".join(["--method mp2", MEASURED_SHARED_FLAGS, *flags])
