#!/usr/bin/env bash
# Online MP² with its defaults (graph rounds) against the baseline: LeNet-5 / Fashion-MNIST, seeds 0-3 (the
# table, plot and JSON in results/online-rounds), then digits, seeds 0-7 (in results/online-rounds/digits).
# Runs already in runs/online-rounds and runs/online-rounds-digits are kept. Extra arguments go to both grids.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python benchmarks/frontier.py --grid online --root runs/online-rounds --out results/online-rounds "$@"
.venv/bin/python benchmarks/frontier.py --grid online-digits --root runs/online-rounds-digits \
  --out results/online-rounds/digits "$@"
