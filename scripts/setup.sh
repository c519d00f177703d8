#!/usr/bin/env bash
# Make a fresh machine ready: Debian's Fashion-MNIST and a virtual environment .venv with this project
# installed (pip install -e ., its pinned packages from requirements.txt), so its packages import from
# anywhere (python benchmarks/network.py too). Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [dev]   (dev: the test tools too, pyproject.toml's dev extra)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
if [ -n "$extra" ] && [ "$extra" != dev ]; then
  echo "setup: error: unknown extra '$extra'; give nothing or 'dev'" >&2
  exit 2
fi

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "setup: installing Debian's dataset-fashion-mnist (real Fashion-MNIST)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# The stamp names what was installed: the project's files and this checkout's place (an editable install
# points at one checkout); an install with dev serves a run without it too.
base=".venv/.installed-$({ cat pyproject.toml requirements.txt; pwd; } | sha256sum | cut -c1-16)"
if [ ! -f "$base-${extra:-base}" ] && { [ -n "$extra" ] || [ ! -f "$base-dev" ]; }; then
  echo "setup: installing this project${extra:+ with its $extra tools} into .venv (pip install -e)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
  touch "$base-${extra:-base}"
fi
