#!/bin/bash
# VGG-15 on real Fashion-MNIST (32x32x3 via --fit-input): a smaller subset and fewer epochs than ResNet-18
# (a VGG-15 step is ~5x a ResNet-18 step here), the faithful pushed group.
cd "$(dirname "$0")/../.." && export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python mp2_pipeline.py --model vgg15 --dataset fashion_mnist --fit-input --train-images 3000 \
    --workers 4 --epochs 4 --lr 0.001 --mixup 0 --snapshot-every 1 --snapshot-eval-images 200 --stage-epochs 2 \
    --stage-flags='--image-batches 2 --eval-images 1000 --val-images 500' --retrain --out runs/vgg15
