#!/usr/bin/env bash
# Online MP² on Fashion-MNIST with no predictor file at all (the issue's second target), pushing front+head,
# with snapshots of partial steps; the baseline is the main job's for seed 0, else baseline-s$SEED here.
# ROUNDS_EPOCHS: epochs of each predictor round (6: the setting used; 3: the first try).
# FINISH: epochs of full pushes at the end (--full-push-epochs; 0: none). SEED: the run's seed (0).
# STAGE_EXTRA: more flags for the rounds' mp2_train_stage.py, and TAG a suffix naming the variant; unset,
# the rounds take online MP²'s default stage flags (-h05w: the freshest 5 % of snapshots held out; the
# stage's lr warm-up, its default with --init). The variants measured before it: STAGE_EXTRA="--lr-warmup 0"
# TAG= (no suffix), and STAGE_EXTRA="--holdout 0.05 --lr-warmup 0" TAG=-h05.
# Online MP²'s own settings are its defaults (python -m runtime.methods mp2 --defaults prints them).
# CONTROL_RUN=0 skips the control on the same schedule. STEP_TIMEOUT (600): half of it is the longest the
# barrier waits for a round in one step; above a round's time, the step a round lands on does not depend
# on the machine's load, and the run repeats.
source "$(dirname "$0")/common.sh"
E=${ROUNDS_EPOCHS:-6}
FINISH=${FINISH:-0}
SEED=${SEED:-0}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
TAG=${TAG--h05w}
STAGE=()  # the default rounds (MP2Options) unless a variant is asked for
if [ "$E" != 6 ] || [ -n "${STAGE_EXTRA+x}" ]; then
  STAGE=(--online-stage-flags "--epochs $E --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0 ${STAGE_EXTRA:-}")
fi
NAME=fashion-online-fh$([ "$E" = 3 ] || echo "-stage$E")$([ "$FINISH" = 0 ] || echo "-finish$FINISH")$TAG$([ "$SEED" = 0 ] || echo "-seed$SEED")
$PY mp2_local.py $FASHION --seed "$SEED" --method mp2 --push front+head --online-wait --online-rounds stage \
    --full-push-epochs "$FINISH" --step-timeout "$STEP_TIMEOUT" ${STAGE[@]+"${STAGE[@]}"} --out "$OUT/$NAME"

if [ "$SEED" = 0 ]; then BASE="$MAIN/runs/pipeline/baseline"; else
  BASE="$OUT/fashion-baseline-s$SEED"
  [ -f "$BASE/summary.json" ] || $PY mp2_local.py $FASHION --seed "$SEED" --method baseline --out "$BASE"
fi
RUNS=("$OUT/$NAME")
if [ "${CONTROL_RUN:-1}" != 0 ]; then
  $PY mp2_local.py $FASHION --seed "$SEED" $CONTROL --full-push-epochs "$FINISH" --step-timeout "$STEP_TIMEOUT" \
      --control-switch-step "$(switch_step "$OUT/$NAME")" --out "$OUT/$NAME-control"
  RUNS+=("$OUT/$NAME-control")
fi
$PY results/unseen/summarize.py "$BASE" "${RUNS[@]}"
