#!/usr/bin/env bash
# results/main-job from nothing: the README's first command (mp2_pipeline.py at its measured defaults: baseline
# with snapshots -> predictor -> MP², beside local SGD), then its comparison copied here. About 15 minutes on
# 2 cores. The README's prose quotes comparison.md; rerunning on another machine changes the wall times.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/run.sh --out runs/mainjob "$@"
cp runs/mainjob/comparison.md runs/mainjob/comparison.json runs/mainjob/comparison.png results/main-job/
