"""python -m runtime.methods mp2 --defaults [--steps-per-epoch N]: online MP²'s default setting as flags.

The one place the README's command line comes from (tests/test_online_schedule.py checks it is there).
"""
from __future__ import annotations

import argparse

from runtime.methods.mp2_options import REFERENCE_STEPS_PER_EPOCH, measured_command


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m runtime.methods", description=__doc__.splitlines()[0])
    p.add_argument("method", choices=["mp2"], help="the method whose defaults to print")
    p.add_argument("--defaults", action="store_true", required=True, help="print the default setting as flags")
    p.add_argument("--steps-per-epoch", type=int, default=REFERENCE_STEPS_PER_EPOCH,
                   help="the run's steps per epoch (Fashion-MNIST, 4 workers: 120; digits, --worker-batch 25: 14)")
    print(measured_command(p.parse_args(argv).steps_per_epoch))


if __name__ == "__main__":
    main()
