#!/usr/bin/env bash
# The five methods on real Fashion-MNIST, LeNet-5, 4 workers, 10 epochs each, on one machine
# (mp2_local.py: separate processes over gRPC on 127.0.0.1); about 30 minutes on 2 cores.
# Runs go to $OUT (runs/methods, not committed); each run's summary.json is copied to
# results/methods/summaries/NAME.json and the README's table is made from those by `python -m reports methods`.
# The online MP² run is the first online setting (push front, stage rounds, no partial-step snapshots,
# windows of 4 full steps every 50), spelled out flag by flag since the defaults have moved on.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/methods}
HERE=results/methods
COMMON="--workers 4 --model lenet5 --dataset fashion_mnist --epochs 10 --mixup 0"
# The baseline also records evenly spaced snapshots, for the WNN's training.
$PY mp2_local.py $COMMON --lr 0.003 --method baseline --snapshot-every 10 --snapshot-regular --out $OUT/baseline
$PY mp2_train_wnn.py --model lenet5 --dataset fashion_mnist --snapshots $OUT/baseline/snapshots --out $OUT/wnn-training
$PY mp2_local.py $COMMON --lr 0.003 --method wnn --wnn $OUT/wnn-training/wnn.npz --out $OUT/wnn
$PY mp2_local.py $COMMON --lr 0.003 --method topk --ratio 0.01 --out $OUT/topk
$PY mp2_local.py $COMMON --lr 0.05 --method dgc --ratio 0.001 --out $OUT/dgc
$PY mp2_local.py $COMMON --lr 0.003 --method mp2 --push front --online-rounds stage --online-wait \
    --warmup-snapshots 40 --online-snapshot-every 4 --partial-snapshot-every 0 --retrain-after 8 \
    --refresh-every 50 --refresh-steps 4 --switch-tolerance 0.02 --watch-every 10 --watch-tolerance 0.03 \
    --check-images 1000 --online-stage-flags "--epochs 4 --image-batches 20 --val-images 1000 --eval-images 1000" \
    --out $OUT/mp2-online

mkdir -p $HERE/summaries
for run in baseline wnn topk dgc mp2-online; do cp $OUT/$run/summary.json $HERE/summaries/$run.json; done
cp $OUT/wnn-training/report.csv $HERE/summaries/wnn-training-report.csv
$PY -m reports methods $HERE/summaries --readme $HERE/README.md
