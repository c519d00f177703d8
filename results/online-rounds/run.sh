#!/usr/bin/env bash
# Online MP² with its defaults (graph rounds) against the baseline, LeNet-5 / Fashion-MNIST, seeds 0-3;
# then the table, plot and JSON in results/online-rounds. Runs already in runs/online-rounds are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python benchmarks/frontier.py --grid online --root runs/online-rounds --out results/online-rounds "$@"
