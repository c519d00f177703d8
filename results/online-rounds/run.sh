#!/usr/bin/env bash
# Online MP² with its defaults (graph rounds) against the baseline: LeNet-5 / Fashion-MNIST, seeds 0-3 (the
# table, plot and JSON in results/online-rounds); then digits, seeds 0-7 (results/online-rounds/digits); then
# Fashion-MNIST again on seeds 4-7, which no setting was chosen on (results/online-rounds/seeds4-7).
# Runs already in runs/online-rounds* are kept. Extra arguments go to every grid.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python benchmarks/frontier.py --grid online --root runs/online-rounds --out results/online-rounds "$@"
.venv/bin/python benchmarks/frontier.py --grid online-digits --root runs/online-rounds-digits \
  --out results/online-rounds/digits "$@"
.venv/bin/python benchmarks/frontier.py --grid online --seeds 4,5,6,7 --root runs/online-rounds-seeds4-7 \
  --out results/online-rounds/seeds4-7 "$@"
