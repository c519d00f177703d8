#!/usr/bin/env bash
# Online MP² on Fashion-MNIST with no predictor file at all (the issue's second target), pushing front+head,
# with snapshots of partial steps; the baseline is the main job's (same flags otherwise).
source "$(dirname "$0")/common.sh"
$PY mp2_local.py $FASHION --method mp2 --push front+head --online-wait --warmup-snapshots 30 --online-snapshot-every 2 \
    --partial-snapshot-every 50 --retrain-after 8 --refresh-every 100 --refresh-steps 2 --switch-tolerance 0.02 \
    --watch-tolerance 0.05 --online-stage-flags "--epochs 3 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0" \
    --out "$OUT/fashion-online-fh"

$PY mp2_local.py $FASHION $CONTROL --control-switch-step "$(switch_step "$OUT/fashion-online-fh")" --out "$OUT/fashion-online-fh-control"
$PY results/unseen/summarize.py "$MAIN/runs/pipeline/baseline" "$OUT/fashion-online-fh" "$OUT/fashion-online-fh-control"
