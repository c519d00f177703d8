#!/bin/bash
# ResNet-18 on real Fashion-MNIST (32x32x3 via --fit-input), 10,000 training images, 4 workers, 8 epochs.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python mp2_pipeline.py --model resnet18 --dataset fashion_mnist --fit-input --train-images 10000 \
    --workers 4 --epochs 8 --lr 0.001 --mixup 0 --snapshot-every 2 --stage-epochs 4 \
    --stage-flags='--image-batches 4 --eval-images 2000' --retrain --out runs/resnet18
