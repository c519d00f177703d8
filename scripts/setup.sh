#!/usr/bin/env bash
# Make a fresh machine ready: a virtual environment .venv with this project installed (pip install -e ., its
# pinned packages from requirements.txt), so its packages import from anywhere (python benchmarks/network.py
# too), and real Fashion-MNIST: wherever the loaders find it ($MP2_DATA, /usr/share/datasets, the Keras
# cache), else Debian's dataset-fashion-mnist, installed only then and only with root (or sudo that needs
# no password). Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [dev]   (dev: the test tools too, pyproject.toml's dev extra)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
if [ -n "$extra" ] && [ "$extra" != dev ] && [ "$extra" != gpu ]; then
  echo "setup: error: unknown extra '$extra'; give nothing, 'dev' (the test tools) or 'gpu' (TensorFlow with CUDA)" >&2
  exit 2
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
  if [ "$extra" = gpu ]; then
    # requirements.txt pins the CPU build; a GPU machine gets TensorFlow's CUDA build of the same line instead.
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    .venv/bin/python -m pip uninstall -q -y tensorflow-cpu
    .venv/bin/python -m pip install -q --disable-pip-version-check "tensorflow[and-cuda]>=2.21,<2.22"
  else
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
  fi
  touch "$base-${extra:-base}"
fi

# The data last: the project's own locator says where it looks, so a copy anywhere it reads is used as it is.
locate='import sys; from data.locate import main; sys.exit(main(["fashion_mnist"]))'
if found=$(.venv/bin/python -c "$locate" 2>/dev/null); then
  echo "setup: Fashion-MNIST found in $found"
else
  if [ "$(id -u)" = 0 ]; then sudo=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
  else
    echo "setup: error: real Fashion-MNIST is not on this machine, and installing Debian's package needs root." >&2
    .venv/bin/python -c "$locate" >/dev/null || true
    exit 1
  fi
  echo "setup: installing Debian's dataset-fashion-mnist (real Fashion-MNIST)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  if ! found=$(.venv/bin/python -c "$locate"); then
    echo "setup: error: dataset-fashion-mnist is installed but its files are not where the loaders look (above)" >&2
    exit 1
  fi
  echo "setup: Fashion-MNIST installed in $found"
fi
