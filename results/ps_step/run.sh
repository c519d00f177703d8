#!/usr/bin/env bash
# results/ps_step from nothing: benchmarks/ps_step.py times the current PS's step per method (ResNet-18, 4 and 8
# workers) and writes results.json and README.md here itself (the README's table is the benchmark's own).
# The before/after study that the folder holds now was made by that script's earlier form, with the old PS
# beside the new one: `git show f6324a8:benchmarks/ps_step.py`; this replaces it with the current PS's figures.
# Each configuration starts a PS and its workers afresh (the runtime's own loops, the workers' training a
# stand-in): a 4-worker ResNet-18 configuration of 5 steps took about 2.5 minutes on a busy 2-core machine, so
# count on half an hour or more.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
"${PY:-.venv/bin/python}" benchmarks/ps_step.py --model resnet18 --workers 4 8 \
    --methods baseline mp2 topk dgc powersgd --steps 20 --warmup 3 --out results/ps_step
