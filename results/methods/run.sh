#!/usr/bin/env bash
# The five methods on real Fashion-MNIST, LeNet-5, 4 workers, 10 epochs each, on one machine
# (mp2_local.py: separate processes over gRPC on 127.0.0.1). Writes runs/methods/* and the table
# results/methods/README.md (via results/methods/table.py). About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/methods}
COMMON="--workers 4 --epochs 10 --mixup 0"
# The baseline also records evenly spaced snapshots, for the WNN's training.
$PY mp2_local.py $COMMON --lr 0.003 --method baseline --snapshot-every 10 --snapshot-regular --out $OUT/baseline
$PY mp2_train_wnn.py --model lenet5 --dataset fashion_mnist --snapshots $OUT/baseline/snapshots --out $OUT/wnn-training
$PY mp2_local.py $COMMON --lr 0.003 --method wnn --wnn $OUT/wnn-training/wnn.npz --out $OUT/wnn
$PY mp2_local.py $COMMON --lr 0.003 --method topk --ratio 0.01 --out $OUT/topk
$PY mp2_local.py $COMMON --method dgc --out $OUT/dgc
$PY mp2_local.py $COMMON --lr 0.003 --method mp2 --online-wait --warmup-snapshots 40 --online-snapshot-every 4 --retrain-after 8 --switch-tolerance 0.02 --online-stage-flags "--epochs 4 --image-batches 20 --val-images 1000 --eval-images 1000" --out $OUT/mp2-online
$PY results/methods/table.py $OUT > results/methods/README.md
