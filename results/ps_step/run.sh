#!/usr/bin/env bash
# results/ps_step from nothing: benchmarks/ps_step.py times the PS's step on the old path and the in-graph
# one and writes results.json and README.md here itself (the README's table is the benchmark's own).
# About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
"${PY:-.venv/bin/python}" benchmarks/ps_step.py --model resnet18 --workers 4 8 --methods baseline mp2 --steps 20 --warmup 3 \
    --out results/ps_step
