#!/bin/bash
# results/network: every method over emulated hosts at 100 Mbit/s and 1 Gbit/s, 4 workers, the main
# task for 10 epochs. Needs root (network namespaces, tc). Starts afresh: the old rows are removed.
# PYTHON picks the interpreter (default: the project's .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -f results/network/results.csv results/network/curves.csv
"${PYTHON:-.venv/bin/python}" benchmarks/network.py --methods baseline,localsgd,powersgd,mp2-online,mp2-online-subset,topk,dgc \
    --rates 100mbit,1gbit --workers 4 --epochs 10 --method-flags 'dgc=--lr 0.05' \
    --out results/network --runs runs/network -- --lr 0.003 --mixup 0
