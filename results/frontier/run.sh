#!/usr/bin/env bash
# The tuned accuracy-for-bytes frontier (results/frontier/README.md): the LeNet-5 grid (many hours on 2 cores;
# it resumes where it stopped), then its report into this folder. ResNet-18 and VGG-15: --grid resnet18 / vgg15.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
.venv/bin/python benchmarks/frontier.py --grid lenet5 --root runs/frontier-tuned --out results/frontier \
    --carry results/frontier/frontier.json "$@"
