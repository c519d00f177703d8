#!/bin/bash
# Attempt 2: the same baseline run (and its snapshots) as run_resnet18.sh; the predictor and MP² push
# front+head (ResNet-18's front layers plus the classifier). Same data, epochs and stage settings.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
DATA="--model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 --push front+head"
.venv/bin/python mp2_train_stage.py $DATA --snapshots runs/resnet18/baseline/snapshots \
    --out predictors/resnet18-fashion_mnist-push-front_head --epochs 4 --image-batches 4 --eval-images 2000 || exit 1
rm -rf runs/resnet18-front-head/mp2
.venv/bin/python mp2_local.py --workers 4 --method mp2 $DATA \
    --predictor predictors/resnet18-fashion_mnist-push-front_head/predictor.npz \
    --epochs 8 --lr 0.001 --mixup 0 --step-timeout 900 --connect-timeout 600 --out runs/resnet18-front-head/mp2
