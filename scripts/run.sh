#!/usr/bin/env bash
# Set up (see setup.sh) and run the main job: the MP² pipeline on a local cluster of 4 workers,
# LeNet-5 on real Fashion-MNIST, baseline vs MP². Extra arguments go to mp2_pipeline.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
# Workers use lr 3e-3 without mixup: with the reference's lr 1e-3 and mixup 1, 10 epochs of LeNet-5 are
# too few to converge. --validation-images 0: the README's figures of this job were made before the
# validation split (the whole training set trained on); until they are made again with it, the job runs
# as they did. Flags given to this script come later and win.
exec .venv/bin/python mp2_pipeline.py --lr 0.003 --mixup 0 --validation-images 0 "$@"
