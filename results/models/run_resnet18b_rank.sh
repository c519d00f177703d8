#!/bin/bash
# Attempts 4 and 5: push front (the faithful 5.91 %), a predictor of head rank R trained on
# run_resnet18b_baseline.sh's snapshots, then MP² with the baseline's data and epochs.
#   bash results/models/run_resnet18b_rank.sh 1    # attempt 4: rank 1, the reference's structure
#   bash results/models/run_resnet18b_rank.sh 8    # attempt 5: rank-8 decoder heads
# EPOCHS: predictor-training epochs (a finished run is extended with --resume when EPOCHS grows).
# A second argument --stage-only runs only the predictor training; --mp2-only only MP², with the predictor as it is.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
RANK=${1:?give the head rank, e.g. 1 or 8}
EPOCHS=${EPOCHS:-5}
DATA="--model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 --push front"
OUT=predictors/resnet18b-fashion_mnist-front-rank$RANK
RESUME=""; [ -f $OUT/last.npz ] && RESUME=--resume
[ "$2" = "--mp2-only" ] || .venv/bin/python mp2_train_stage.py $DATA --head-rank $RANK --snapshots runs/resnet18b/baseline/snapshots $RESUME \
    --out $OUT --epochs $EPOCHS --image-batches 4 --eval-images 2000 || exit 1
[ -f $OUT/predictor.npz ] || exit 1
[ "$2" = "--stage-only" ] && exit 0
rm -rf runs/resnet18b-rank$RANK/mp2
.venv/bin/python mp2_local.py --workers 4 --method mp2 $DATA --predictor $OUT/predictor.npz \
    --epochs 8 --lr 0.001 --mixup 0 --step-timeout 900 --connect-timeout 600 --out runs/resnet18b-rank$RANK/mp2
