#!/bin/bash
# Re-collection (attempts 4-5): the baseline of run_resnet18.sh with snapshot collection, exactly the
# flags the pipeline gave mp2_local.py in its stage 1, into a new directory.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
rm -rf runs/resnet18b/baseline
.venv/bin/python mp2_local.py --workers 4 --method baseline --epochs 8 --out runs/resnet18b/baseline --snapshot-every 2 \
    --model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 --lr 0.001 --mixup 0 \
    --step-timeout 900 --connect-timeout 600
