# Shared by the results/unseen scripts: LeNet-5, 4 workers, the project's main-job setting (lr 0.003, no mixup).
# OUT: where runs and predictors go (default /tmp/unseen); MAIN: the main checkout holding the Fashion-MNIST
# baseline with 120 snapshots (runs/pipeline/baseline) that mp2_pipeline.py made.
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL=2
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
OUT=${OUT:-/tmp/unseen}
MAIN=${MAIN:-/work/main}
COMMON="--workers 4 --model lenet5 --lr 0.003 --mixup 0"
DIGITS="$COMMON --dataset digits --epochs 30 --worker-batch 25"
FASHION="$COMMON --dataset fashion_mnist --epochs 10"
