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
