#!/usr/bin/env bash
# results/soak from nothing: the main job's cluster 50 times beside one busy loop (about 40 minutes on
# 2 cores; runs in runs/soak, not committed), then soak.json here and the README's table.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY benchmarks/soak.py --runs 50 --epochs 2 --load 1 --root runs/soak
cp runs/soak/soak.json results/soak/soak.json
$PY -m reports soak results/soak/soak.json --readme results/soak/README.md
