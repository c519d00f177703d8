#!/usr/bin/env bash
# The issue's table: each row's baseline, MP² with the recommended setting, and its control.
source "$(dirname "$0")/common.sh"
pair() {  # name, the data flags, the predictor to start from, stage flags, warm flags
  $PY mp2_local.py $2 $5 --predictor-init "$3" --online-stage-flags "$4" --out "$OUT/$1-warm"
  $PY mp2_local.py $2 $CONTROL --control-switch-step "$(switch_step "$OUT/$1-warm")" --out "$OUT/$1-warm-control"
}
# Fashion s0 -> Fashion s0 (baseline: the main job's), Fashion s0 -> Fashion s1, digits -> Fashion.
pair fashion-s0 "$FASHION" "$OUT/pred-fashion-fh" "$STAGE_FASHION" "$WARM_FASHION"
$PY mp2_local.py $FASHION --seed 1 --method baseline --out "$OUT/fashion-s1-baseline"
pair fashion-s1 "$FASHION --seed 1" "$OUT/pred-fashion-fh" "$STAGE_FASHION" "$WARM_FASHION"
pair digits-to-fashion "$FASHION" "$OUT/pred-digits-fh" "$STAGE_FASHION" "$WARM_FASHION"
# Fashion -> digits: digits.sh.
$PY results/unseen/summarize.py "$MAIN/runs/pipeline/baseline" "$OUT/fashion-s0-warm" "$OUT/fashion-s0-warm-control" \
    "$OUT/digits-to-fashion-warm" "$OUT/digits-to-fashion-warm-control"
$PY results/unseen/summarize.py "$OUT/fashion-s1-baseline" "$OUT/fashion-s1-warm" "$OUT/fashion-s1-warm-control"
# Tried first (the "v1" rows of README.md): rounds about every 300 steps, one stage epoch of 20 image batches.
V1="$WARM --online-snapshot-every 1 --warmup-snapshots 4 --partial-snapshot-every 100 --retrain-after 6"
V1_STAGE="--epochs 1 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0"
$PY mp2_local.py $FASHION $V1 --predictor-init "$OUT/pred-fashion-fh" --online-stage-flags "$V1_STAGE" --out "$OUT/fashion-s0-warm-v1"
$PY mp2_local.py $FASHION $CONTROL --control-switch-step "$(switch_step "$OUT/fashion-s0-warm-v1")" --out "$OUT/fashion-s0-warm-v1-control"
$PY mp2_local.py $FASHION --seed 1 $V1 --predictor-init "$OUT/pred-fashion-fh" --online-stage-flags "$V1_STAGE" --out "$OUT/fashion-s1-warm-v1"
$PY mp2_local.py $FASHION --seed 1 $CONTROL --control-switch-step "$(switch_step "$OUT/fashion-s1-warm-v1")" --out "$OUT/fashion-s1-warm-v1-control"
# Tried last: seed 1 with the rounds' learning rate lowered to 3e-4 (a round starts Adam afresh).
$PY mp2_local.py $FASHION --seed 1 $WARM_FASHION --predictor-init "$OUT/pred-fashion-fh" \
    --online-stage-flags "${STAGE_FASHION/--mixup 0/--mixup 0 --lr 0.0003}" --out "$OUT/fashion-s1-warm-lr3e-4"
