#!/usr/bin/env bash
# The two predictors (push front+head): one from the main job's Fashion-MNIST baseline (120 snapshots,
# seed 0), one from a digits baseline (140 snapshots, every 3rd step at random).
source "$(dirname "$0")/common.sh"
$PY mp2_train_stage.py --model lenet5 --dataset fashion_mnist --push front+head \
    --snapshots "$MAIN/runs/pipeline/baseline/snapshots" --out "$OUT/pred-fashion-fh" --epochs 4
$PY mp2_local.py $DIGITS --method baseline --snapshot-every 3 --out "$OUT/digits-baseline"
$PY mp2_train_stage.py --model lenet5 --dataset digits --push front+head \
    --snapshots "$OUT/digits-baseline/snapshots" --out "$OUT/pred-digits-fh" --epochs 4
