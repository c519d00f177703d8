#!/usr/bin/env bash
# results/scale from nothing: the PS's time per step for 2-16 simulated workers of LeNet-5 (benchmarks/ps_step.py:
# the runtime's PS and worker loops, the workers' training a cheap stand-in), its table and plot (python -m reports scale), and the
# on-paper page for ResNet-50 and a 1B-parameter model (benchmarks/scale_on_paper.py). About 15 minutes on 2 cores
# with the benchmark's earlier form; today's runs local SGD's and SparseLoCo's local steps too (not timed yet).
# Then, as root only, hosts/: ResNet-18 on emulated hosts at 100 Mbit/s, 4 and 8 workers, 1, 2 and 4 PS tasks,
# baseline and local SGD (H=16), then the baseline with --chunks 4 at 1 and 2 PS tasks, each also unshaped
# (benchmarks/scale_hosts.py). About 40 minutes more.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=2
PY="${PY:-.venv/bin/python}"
"$PY" benchmarks/ps_step.py --model lenet5 --workers 2 4 8 16 --methods baseline localsgd sparseloco mp2 \
    --steps 30 --warmup 3 --out results/scale/ps_step
"$PY" -m reports scale results/scale
"$PY" benchmarks/scale_on_paper.py > results/scale/on-paper.md
if [ "$(id -u)" = 0 ]; then
    nice -n 10 "$PY" benchmarks/scale_hosts.py --workers 4 8 --ps-tasks 1 2 4 --methods baseline localsgd \
        --retries 2 --out results/scale/hosts --runs runs/scale-hosts
    nice -n 10 "$PY" benchmarks/scale_hosts.py --add --workers 4 8 --ps-tasks 1 2 --methods baseline-c4 \
        --retries 2 --out results/scale/hosts --runs runs/scale-hosts
else
    echo "run.sh: skipping results/scale/hosts (emulated hosts need root: ip netns, tc)" >&2
fi
