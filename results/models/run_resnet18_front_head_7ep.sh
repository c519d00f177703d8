#!/bin/bash
# Attempt 3: attempt 2's predictor training (push front+head) continued from its epoch 4 to epoch 7
# (--resume; a copy, so attempt 2's predictor stays as it was), then MP² with the same data and epochs.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
DATA="--model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 --push front+head"
rm -rf predictors/resnet18-fashion_mnist-push-front_head-7ep
cp -r predictors/resnet18-fashion_mnist-push-front_head predictors/resnet18-fashion_mnist-push-front_head-7ep
.venv/bin/python mp2_train_stage.py $DATA --snapshots runs/resnet18/baseline/snapshots --resume \
    --out predictors/resnet18-fashion_mnist-push-front_head-7ep --epochs 7 --image-batches 4 --eval-images 2000 || exit 1
rm -rf runs/resnet18-front-head-7ep/mp2
.venv/bin/python mp2_local.py --workers 4 --method mp2 $DATA \
    --predictor predictors/resnet18-fashion_mnist-push-front_head-7ep/predictor.npz \
    --epochs 8 --lr 0.001 --mixup 0 --step-timeout 900 --connect-timeout 600 --out runs/resnet18-front-head-7ep/mp2
