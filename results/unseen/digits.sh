#!/usr/bin/env bash
# A Fashion-MNIST predictor on the digits it never saw (run predictors.sh first).
source "$(dirname "$0")/common.sh"
P="$OUT/pred-fashion-fh"
# The recommended setting, and its control on the same schedule.
$PY mp2_local.py $DIGITS $WARM_DIGITS --predictor-init "$P" --online-stage-flags "$STAGE_DIGITS" --out "$OUT/digits-warm"
$PY mp2_local.py $DIGITS $CONTROL --control-switch-step "$(switch_step "$OUT/digits-warm")" --out "$OUT/digits-warm-control"
# What was tried on the way: the Fashion predictor fixed; the control with no full push at all;
# online MP² with no predictor file (warm-up of 8 full steps, no partial snapshots).
$PY mp2_local.py $DIGITS --method mp2 --push front+head --predictor "$P" --out "$OUT/digits-fixed"
$PY mp2_local.py $DIGITS --method mp2 --push front+head --prediction hold --out "$OUT/digits-hold-fh"
$PY mp2_local.py $DIGITS --method mp2 --push front+head --online-wait --online-rounds stage --warmup-snapshots 8 --online-snapshot-every 1 \
    --refresh-every 60 --refresh-steps 2 --retrain-after 2 --switch-tolerance 0.02 --watch-tolerance 0.05 \
    --online-stage-flags "$STAGE_DIGITS" --out "$OUT/digits-online-fh"
# The ablation: the recommended flags without the warm start (online MP² from nothing).
$PY mp2_local.py $DIGITS $WARM_DIGITS --online-stage-flags "$STAGE_DIGITS" --out "$OUT/digits-scratch"
$PY results/unseen/summarize.py "$OUT/digits-baseline" "$OUT/digits-warm" "$OUT/digits-warm-control" \
    "$OUT/digits-fixed" "$OUT/digits-hold-fh" "$OUT/digits-online-fh" "$OUT/digits-scratch"
