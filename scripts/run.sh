#!/usr/bin/env bash
# Set up (see setup.sh) and run the main job: the MP² pipeline on a local cluster of 4 workers,
# LeNet-5 on real Fashion-MNIST, baseline vs MP². Extra arguments go to mp2_pipeline.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python mp2_pipeline.py "$@"
