# Sourced by results/unseen/run.sh: LeNet-5, 4 workers, the project's main-job setting (lr 0.003, no mixup).
# OUT: where runs and predictors go (default runs/unseen, not committed); PY: the interpreter.
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL=2
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/unseen}
COMMON="--workers 4 --model lenet5 --lr 0.003 --mixup 0"
DIGITS="$COMMON --dataset digits --epochs 30 --worker-batch 25"
FASHION="$COMMON --dataset fashion_mnist --epochs 10"

# The recommended setting: online MP² warm-started from a predictor of another run or dataset, pushing the
# front layers and the classifier (front+head); snapshots of partial steps keep training the predictor on
# this task at no traffic; a 2-step full-push window every 100 steps checks it. Online MP²'s defaults are
# that setting, its counts derived from the steps per epoch (on digits, 14 steps: --warmup-snapshots 3
# --online-snapshot-every 1 --partial-snapshot-every 20 --retrain-after 3; python -m runtime.methods mp2
# --defaults --steps-per-epoch 14). Only what these records used besides the defaults is spelled out: the
# digits rounds' stage flags, and the Fashion-MNIST warm starts' spacing of the rounds.
WARM="--method mp2 --push front+head --online-wait --online-rounds stage"  # the records: stage rounds
WARM_DIGITS="$WARM"
STAGE_DIGITS="--epochs 2 --image-batches 20 --val-images 144 --eval-images 355 --mixup 0"
WARM_FASHION="$WARM --online-snapshot-every 1 --warmup-snapshots 4 --partial-snapshot-every 25 --retrain-after 6"
STAGE_FASHION="--epochs 2 --image-batches 10 --val-images 1000 --eval-images 1000 --mixup 0"
# The control on the same schedule: full pushes until the MP² run's switch, then the same windows.
CONTROL="--method mp2 --push front+head --prediction hold"

switch_step() {  # the step at which the MP² run in $1 switched (its control switches there too)
  $PY -c "import json,sys; s=json.load(open(sys.argv[1]+'/summary.json'));
print(next(e['step'] for e in s['method_stats']['online']['events'] if e['event']=='switch to mp2'))" "$1"
}
