#!/usr/bin/env bash
# results/unseen from nothing: MP² with stage rounds on a task its predictor never saw, then the README's
# tables (python -m reports unseen). Runs and predictors go to $OUT (runs/unseen); each run's summary.json
# and metrics.jsonl are copied to results/unseen/records/NAME/. A day or more on 2 cores.
#   bash results/unseen/run.sh [PART ...]    PART: predictors digits table online report (default: all, in order)
# predictors: the Fashion-MNIST seed-0 baseline with 120 snapshots (the main job's run) and a digits baseline
#   with 140, and a front+head predictor trained on each;
# digits: the Fashion predictor on digits (warm start, its control, and what was tried on the way);
# table: the transfer table (Fashion s0 -> s0, s0 -> s1, digits -> Fashion), the first "v1" spacing, a lower lr;
# online: online MP² with no predictor file, seeds 0-3, in the three variants of the README, the first
#   variant's controls, and its full-push finish on seeds 0 and 1.
source "$(dirname "$0")/common.sh"
HERE=results/unseen

predictors() {
  $PY mp2_local.py $FASHION --method baseline --snapshot-every 10 --out "$OUT/fashion-baseline-s0"
  $PY mp2_train_stage.py --model lenet5 --dataset fashion_mnist --push front+head \
      --snapshots "$OUT/fashion-baseline-s0/snapshots" --out "$OUT/pred-fashion-fh" --epochs 4
  $PY mp2_local.py $DIGITS --method baseline --snapshot-every 3 --out "$OUT/digits-baseline"
  $PY mp2_train_stage.py --model lenet5 --dataset digits --push front+head \
      --snapshots "$OUT/digits-baseline/snapshots" --out "$OUT/pred-digits-fh" --epochs 4
}

digits() {
  local P="$OUT/pred-fashion-fh"
  # The recommended setting, and its control on the same schedule.
  $PY mp2_local.py $DIGITS $WARM_DIGITS --predictor-init "$P" --online-stage-flags "$STAGE_DIGITS" --out "$OUT/digits-warm"
  $PY mp2_local.py $DIGITS $CONTROL --control-switch-step "$(switch_step "$OUT/digits-warm")" --out "$OUT/digits-warm-control"
  # Tried on the way: the Fashion predictor fixed; the control with no full push at all; online MP² with
  # no predictor file (warm-up of 8 full steps, no partial snapshots).
  $PY mp2_local.py $DIGITS --method mp2 --push front+head --predictor "$P" --out "$OUT/digits-fixed"
  $PY mp2_local.py $DIGITS --method mp2 --push front+head --prediction hold --out "$OUT/digits-hold-fh"
  $PY mp2_local.py $DIGITS --method mp2 --push front+head --online-wait --online-rounds stage --warmup-snapshots 8 \
      --online-snapshot-every 1 --partial-snapshot-every 0 --refresh-every 60 --refresh-steps 2 --retrain-after 2 \
      --switch-tolerance 0.02 --watch-tolerance 0.05 --online-stage-flags "$STAGE_DIGITS" --out "$OUT/digits-online-fh"
  # The ablation: the recommended flags without the warm start (online MP² from nothing).
  $PY mp2_local.py $DIGITS $WARM_DIGITS --online-stage-flags "$STAGE_DIGITS" --out "$OUT/digits-scratch"
}

pair() {  # name, the data flags, the predictor to start from, stage flags, warm flags: MP² and its control
  $PY mp2_local.py $2 $5 --predictor-init "$3" --online-stage-flags "$4" --out "$OUT/$1-warm"
  $PY mp2_local.py $2 $CONTROL --control-switch-step "$(switch_step "$OUT/$1-warm")" --out "$OUT/$1-warm-control"
}

table() {
  pair fashion-s0 "$FASHION" "$OUT/pred-fashion-fh" "$STAGE_FASHION" "$WARM_FASHION"
  $PY mp2_local.py $FASHION --seed 1 --method baseline --out "$OUT/fashion-s1-baseline"
  pair fashion-s1 "$FASHION --seed 1" "$OUT/pred-fashion-fh" "$STAGE_FASHION" "$WARM_FASHION"
  pair digits-to-fashion "$FASHION" "$OUT/pred-digits-fh" "$STAGE_FASHION" "$WARM_FASHION"
  # Tried first ("v1"): rounds about every 300 steps, one stage epoch of 20 image batches.
  local V1="$WARM --online-snapshot-every 1 --warmup-snapshots 4 --partial-snapshot-every 100 --retrain-after 6"
  local V1_STAGE="--epochs 1 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0"
  local seed
  for seed in 0 1; do
    local name="$OUT/fashion-s$seed-warm-v1"
    $PY mp2_local.py $FASHION --seed $seed $V1 --predictor-init "$OUT/pred-fashion-fh" --online-stage-flags "$V1_STAGE" --out "$name"
    $PY mp2_local.py $FASHION --seed $seed $CONTROL --control-switch-step "$(switch_step "$name")" --out "$name-control"
  done
  # Tried last: seed 1 with the rounds' learning rate lowered to 3e-4 (a round starts Adam afresh).
  $PY mp2_local.py $FASHION --seed 1 $WARM_FASHION --predictor-init "$OUT/pred-fashion-fh" \
      --online-stage-flags "${STAGE_FASHION/--mixup 0/--mixup 0 --lr 0.0003}" --out "$OUT/fashion-s1-warm-lr3e-4"
}

online_run() {  # SEED FINISH TAG CONTROL [STAGE_EXTRA]: one run of online MP² with no predictor file (and its control)
  local seed=$1 finish=$2 tag=$3 control=$4 stage=()
  # --step-timeout 600 lets the barrier wait for a whole round in one step, so a run repeats bit for bit
  # whatever the machine's load. Without STAGE_EXTRA the rounds take online MP²'s default stage flags.
  [ $# -ge 5 ] && stage=(--online-stage-flags "--epochs 6 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0 $5")
  local name="$OUT/fashion-online-fh-stage6$([ "$finish" = 0 ] || echo "-finish$finish")$tag$([ "$seed" = 0 ] || echo "-seed$seed")"
  $PY mp2_local.py $FASHION --seed "$seed" --method mp2 --push front+head --online-wait --online-rounds stage \
      --full-push-epochs "$finish" --step-timeout 600 ${stage[@]+"${stage[@]}"} --out "$name"
  if [ "$control" = 1 ]; then
    $PY mp2_local.py $FASHION --seed "$seed" $CONTROL --full-push-epochs "$finish" --step-timeout 600 \
        --control-switch-step "$(switch_step "$name")" --out "$name-control"
  fi
}

online() {
  local seed
  for seed in 2 3; do $PY mp2_local.py $FASHION --seed $seed --method baseline --out "$OUT/fashion-baseline-s$seed"; done
  for seed in 0 1 2 3; do
    online_run $seed 0 "" 1 "--holdout 0.2 --lr-warmup 0"  # the first variant: the stage's 20 % held out, no warm-up
    online_run $seed 0 -h05 0 "--holdout 0.05 --lr-warmup 0"
    online_run $seed 0 -h05w 0                            # recommended: the defaults (5 % held out, lr warm-up)
  done
  for seed in 0 1; do online_run $seed 1 "" 0 "--holdout 0.2 --lr-warmup 0"; done  # a last epoch of full pushes
}

report() {
  local dir
  for dir in "$OUT"/*/; do
    [ -f "$dir/summary.json" ] || continue
    mkdir -p "$HERE/records/$(basename "$dir")"
    cp "$dir/summary.json" "$dir/metrics.jsonl" "$HERE/records/$(basename "$dir")/"
  done
  rm -f "$HERE/records/fashion-baseline-s0/transcribed.json"  # the run's own summary replaces the copied figures
  cp "$OUT/pred-fashion-fh/report.json" "$HERE/records/pred-fashion-fh-report.json"
  cp "$OUT/pred-digits-fh/report.json" "$HERE/records/pred-digits-fh-report.json"
  $PY -m reports unseen "$HERE/records" --readme "$HERE/README.md"
}

for part in "${@:-predictors digits table online report}"; do
  for p in $part; do
    case $p in
      predictors|digits|table|online|report) "$p" ;;
      *) echo "run.sh: unknown part $p (predictors, digits, table, online, report)" >&2; exit 2 ;;
    esac
  done
done
