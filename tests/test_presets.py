"""--preset: what --lr, --mixup and --push are when not given. `measured` (the default) is the tuned frontier's
setting; `paper` the MP² reference's; a flag given always wins."""
from __future__ import annotations

import pytest

from runtime.flags import ps_parser

pytestmark = pytest.mark.unit


def _parsed(*argv: str):
    args = ps_parser("").parse_args(list(argv))
    return args.lr, args.mixup, args.push


def test_a_method_named_alone_gets_its_measured_setting():
    assert _parsed("--method", "mp2") == (0.003, 0.0, "front+head")  # MP² pushes the classifier too
    assert _parsed("--method", "baseline") == (0.003, 0.0, "front")
    assert _parsed("--method", "localsgd") == (0.006, 0.0, "front")  # local SGD's tuned rate
    assert _parsed("--method", "dgc")[0] == 0.05
    assert _parsed("--method", "sparseloco")[0] == 0.0015  # SparseLoCo's tuned rate (at 30 epochs)


def test_the_paper_preset_is_the_reference_and_a_given_flag_wins():
    assert _parsed("--preset", "paper", "--method", "mp2") == (1e-3, 1.0, "front")
    assert _parsed("--preset", "paper", "--method", "dgc")[0] == 0.05
    assert _parsed("--method", "mp2", "--lr", "0.01", "--mixup", "0.5", "--push", "front") == (0.01, 0.5, "front")
    assert _parsed("--preset", "paper", "--method", "localsgd", "--mixup", "0") == (1e-3, 0.0, "front")
