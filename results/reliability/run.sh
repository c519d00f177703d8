#!/usr/bin/env bash
# results/reliability from nothing (about 3 hours on 2 cores): TensorFlow's request-id collisions measured
# on one server, what a checkpoint costs, and the soak — 30-epoch LeNet-5 runs of 4 workers beside a busy
# loop until 100,000 steps are done, then three ResNet-18 runs at the frontier's length. The runs go to
# runs/reliability (not committed); their records and the README's tables come here.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=results/reliability
$PY benchmarks/request_ids.py --calls 300000 --out $OUT/request_ids.json
$PY benchmarks/checkpoint_cost.py --models lenet5 resnet18 --out $OUT/checkpoint_cost.json
$PY benchmarks/soak.py --steps 100000 --runs 40 --epochs 30 --load 1 --root runs/reliability/lenet5
$PY benchmarks/soak.py --runs 3 --epochs 8 --load 1 --root runs/reliability/resnet18 \
  -- --model resnet18 --fit-input --train-images 10000 --lr 0.001
cp runs/reliability/lenet5/soak.json $OUT/soak-lenet5.json
cp runs/reliability/resnet18/soak.json $OUT/soak-resnet18.json
$PY -m reports soak $OUT/soak-lenet5.json --readme $OUT/README.md --block lenet5
$PY -m reports soak $OUT/soak-resnet18.json --readme $OUT/README.md --block resnet18
