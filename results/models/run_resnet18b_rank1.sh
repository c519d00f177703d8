#!/bin/bash
# Attempt 4: push front (the faithful 5.91 %), predictor of head rank 1 (the reference's structure), trained longer on
# run_resnet18b_baseline.sh's snapshots, then MP² with the baseline's data and epochs.
# EPOCHS: predictor-training epochs (a finished run is extended with --resume when EPOCHS grows).
# --stage-only: only the predictor training; --mp2-only: only MP², with the predictor as it is.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
EPOCHS=${EPOCHS:-5}
DATA="--model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 --push front"
OUT=predictors/resnet18b-fashion_mnist-front-rank1
RESUME=""; [ -f $OUT/last.npz ] && RESUME=--resume
[ "$1" = "--mp2-only" ] || .venv/bin/python mp2_train_stage.py $DATA --head-rank 1 --snapshots runs/resnet18b/baseline/snapshots $RESUME \
    --out $OUT --epochs $EPOCHS --image-batches 4 --eval-images 2000 || exit 1
[ -f $OUT/predictor.npz ] || exit 1
[ "$1" = "--stage-only" ] && exit 0
rm -rf runs/resnet18b-rank1/mp2
.venv/bin/python mp2_local.py --workers 4 --method mp2 $DATA --predictor $OUT/predictor.npz \
    --epochs 8 --lr 0.001 --mixup 0 --step-timeout 900 --connect-timeout 600 --out runs/resnet18b-rank1/mp2
