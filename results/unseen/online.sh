#!/usr/bin/env bash
# Online MP² on Fashion-MNIST with no predictor file at all (the issue's second target), pushing front+head,
# with snapshots of partial steps; the baseline is the main job's (same flags otherwise).
# ROUNDS_EPOCHS: epochs of each predictor round (6: the setting that met the target; 3: the first try).
source "$(dirname "$0")/common.sh"
E=${ROUNDS_EPOCHS:-6}
NAME=fashion-online-fh$([ "$E" = 3 ] || echo "-stage$E")
$PY mp2_local.py $FASHION --method mp2 --push front+head --online-wait --warmup-snapshots 30 --online-snapshot-every 2 \
    --partial-snapshot-every 50 --retrain-after 8 --refresh-every 100 --refresh-steps 2 --switch-tolerance 0.02 \
    --watch-tolerance 0.05 --online-stage-flags "--epochs $E --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0" \
    --out "$OUT/$NAME"

$PY mp2_local.py $FASHION $CONTROL --control-switch-step "$(switch_step "$OUT/$NAME")" --out "$OUT/$NAME-control"
$PY results/unseen/summarize.py "$MAIN/runs/pipeline/baseline" "$OUT/$NAME" "$OUT/$NAME-control"
