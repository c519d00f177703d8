#!/usr/bin/env bash
# Set up (see setup.sh) and run the test suite in two tiers (tests/conftest.py defines them): the unit
# tier first (under a minute), and only if it passes, the rest (cluster and root). Each tier runs on two
# parallel runners (pytest-xdist; each has its own ports, tests/cluster.py). Extra arguments go to pytest,
# in both tiers (-n 0 runs one test at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export TF_CPP_MIN_LOG_LEVEL=2

# pytest exits 5 when a tier selects no test (e.g. -k matching one tier only): not a failure of that
# tier, but at least one tier must run a test, or the suite would pass having tested nothing.
ran=0
for tier in "unit" "not unit"; do
  echo "test: tier: $tier"
  status=0
  .venv/bin/python -m pytest -q -n 2 -m "$tier" "$@" tests || status=$?
  case $status in
    0) ran=1 ;;
    5) ;;
    *) echo "test: the '$tier' tier failed (pytest exit $status)" >&2; exit "$status" ;;
  esac
done
if [ "$ran" = 0 ]; then
  echo "test: error: no test ran in any tier" >&2
  exit 5
fi
