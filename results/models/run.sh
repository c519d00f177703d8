#!/usr/bin/env bash
# results/models from nothing: ResNet-18 through the MP² pipeline and four more attempts on its snapshots,
# VGG-15's baseline, each model's speed, then results.json and the README's tables (python -m reports models).
# Runs go to runs/, predictors to predictors/ (neither committed); each run's summary.json and each
# predictor's report.json are copied into the attempt's folder here. Many hours on 2 cores.
# Attempts (README.md says what each measured):
#   resnet18                 the faithful pipeline: push front, predictor 4 epochs
#   resnet18-front-head      push front+head, on resnet18's snapshots, predictor 4 epochs
#   resnet18-front-head-7ep  the same predictor trained on to 7 epochs (--resume, in a copy)
#   resnet18b                the same baseline collected again (deterministic: the same curve)
#   resnet18b-rank1, -rank8  push front, predictor of head rank 1 or 8, 5 epochs, on resnet18b's snapshots
#   vgg15                    VGG-15's baseline only (the pipeline's stage 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
PY=${PY:-.venv/bin/python}
HERE=results/models
DATA="--model resnet18 --dataset fashion_mnist --fit-input --train-images 10000"
TRAIN="--epochs 8 --lr 0.001 --mixup 0 --step-timeout 900 --connect-timeout 600"
STAGE="--image-batches 4 --eval-images 2000"

# Attempt 1: the whole pipeline (baseline with a snapshot every 2 steps, predictor, MP²; no local SGD run).
$PY mp2_pipeline.py $DATA --workers 4 --epochs 8 --lr 0.001 --mixup 0 --snapshot-every 2 --stage-epochs 4 \
    --stage-flags="$STAGE" --localsgd-sync-every 0 --retrain --out runs/resnet18
# Attempt 2: push front+head, a predictor trained on the same snapshots.
P2=predictors/resnet18-fashion_mnist-push-front_head
$PY mp2_train_stage.py $DATA --push front+head --snapshots runs/resnet18/baseline/snapshots --out $P2 --epochs 4 $STAGE
$PY mp2_local.py --workers 4 --method mp2 $DATA --push front+head --predictor $P2/predictor.npz $TRAIN \
    --out runs/resnet18-front-head/mp2
# Attempt 3: attempt 2's predictor trained on from epoch 4 to 7, in a copy.
P3=$P2-7ep
rm -rf $P3 && cp -r $P2 $P3
$PY mp2_train_stage.py $DATA --push front+head --snapshots runs/resnet18/baseline/snapshots --resume --out $P3 --epochs 7 $STAGE
$PY mp2_local.py --workers 4 --method mp2 $DATA --push front+head --predictor $P3/predictor.npz $TRAIN \
    --out runs/resnet18-front-head-7ep/mp2
# Attempts 4 and 5: the baseline collected again (the flags the pipeline gave its stage 1), then push
# front with predictors of head rank 1 and 8, 5 epochs each.
$PY mp2_local.py --workers 4 --method baseline $DATA $TRAIN --snapshot-every 2 --out runs/resnet18b/baseline
for RANK in 1 8; do
  P=predictors/resnet18b-fashion_mnist-front-rank$RANK
  $PY mp2_train_stage.py $DATA --push front --head-rank $RANK --snapshots runs/resnet18b/baseline/snapshots \
      --out $P --epochs 5 $STAGE
  $PY mp2_local.py --workers 4 --method mp2 $DATA --push front --predictor $P/predictor.npz $TRAIN \
      --out runs/resnet18b-rank$RANK/mp2
done
# VGG-15: the pipeline's stage 1 alone (its network was still at chance: README.md says why no more).
$PY mp2_local.py --workers 4 --method baseline --model vgg15 --dataset fashion_mnist --fit-input --train-images 3000 \
    --epochs 4 --lr 0.001 --mixup 0 --snapshot-every 1 --snapshot-eval-images 200 --step-timeout 1800 \
    --connect-timeout 600 --out runs/vgg15/baseline
# Each model's speed on this machine (the table is the script's output).
$PY benchmarks/model_speed.py --models lenet5 resnet18 alexnet vgg15 resnet34 resnet50 --out $HERE/speed.json \
    | grep -v '^wrote ' > $HERE/speed.md

keep() {  # keep RUN_FILE as FOLDER/NAME
  mkdir -p "$HERE/$2" && cp "$1" "$HERE/$2/$3"
}
keep runs/resnet18/baseline/summary.json resnet18 baseline-summary.json
keep runs/resnet18/mp2/summary.json resnet18 mp2-summary.json
keep predictors/resnet18-fashion_mnist/report.json resnet18 predictor-report.json
keep runs/resnet18-front-head/mp2/summary.json resnet18-front-head mp2-summary.json
keep $P2/report.json resnet18-front-head predictor-report.json
keep runs/resnet18-front-head-7ep/mp2/summary.json resnet18-front-head-7ep mp2-summary.json
keep $P3/report.json resnet18-front-head-7ep predictor-report.json
keep runs/resnet18b/baseline/summary.json resnet18b baseline-summary.json
for RANK in 1 8; do
  keep runs/resnet18b-rank$RANK/mp2/summary.json resnet18b-rank$RANK mp2-summary.json
  keep predictors/resnet18b-fashion_mnist-front-rank$RANK/report.json resnet18b-rank$RANK predictor-report.json
done
keep runs/vgg15/baseline/summary.json vgg15 baseline-summary.json
$PY -m reports models $HERE
