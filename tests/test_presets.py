"""--preset: what --epochs, --lr, --mixup and --push are when not given. `measured` (the default) is the tuned
frontier's setting; `paper` the MP² reference's; a flag given always wins. Each method's measured defaults are
checked against the frontier's record (results/frontier/frontier.json), so a default and the record cannot drift apart."""
from __future__ import annotations

import json
import shlex

import pytest

from runtime.flags import ps_parser
from runtime.methods import METHODS
from tests.cluster import ROOT

pytestmark = pytest.mark.unit

FRONTIER = ROOT / "results" / "frontier" / "frontier.json"
# Each method's row of the tuned frontier whose chosen setting is the method's default (the best of its family at
# the long budget). mp2 (online, an exchange every step) and wnn have no tuned row yet: they keep the common 0.003.
ROW_OF = {"baseline": "baseline", "sync": "sync", "localsgd": "localsgd-H64", "sparseloco": "sparseloco-H64",
          "powersgd": "powersgd-R2", "dgc": "dgc", "topk": "topk-0.01", "streaming": "streaming-H64"}
UNTUNED = {"mp2", "wnn"}


def _parsed(*argv: str):
    args = ps_parser("").parse_args(list(argv))
    return args.lr, args.mixup, args.push


def _long_budget_rows() -> tuple[int, dict[str, dict]]:
    record = json.loads(FRONTIER.read_text())
    budget = max(record["budgets"], key=lambda b: b["budget_epochs"])
    return budget["budget_epochs"], {r["row"]: r for r in budget["rows"]}


def _flags(row: dict) -> dict[str, str]:
    words = shlex.split(row["flags"])
    return {w: v for w, v in zip(words, words[1:]) if w.startswith("--") and not v.startswith("--")}


def test_a_method_named_alone_gets_its_measured_setting():
    assert _parsed("--method", "mp2") == (0.003, 0.0, "front+head")  # MP² pushes the classifier too
    assert _parsed("--method", "baseline") == (0.003, 0.0, "front")
    assert _parsed("--method", "localsgd") == (0.006, 0.0, "front")  # local SGD's tuned rate
    assert _parsed("--method", "dgc")[0] == 0.025  # DGC's SGD rate chosen at 30 epochs
    assert _parsed("--method", "topk")[0] == 0.006
    assert _parsed("--method", "sparseloco")[0] == 0.0015  # SparseLoCo's tuned rate (at 30 epochs)
    assert ps_parser("").parse_args([]).epochs == 30


def test_the_paper_preset_is_the_reference_and_a_given_flag_wins():
    assert _parsed("--preset", "paper", "--method", "mp2") == (1e-3, 1.0, "front")
    assert _parsed("--preset", "paper", "--method", "dgc")[0] == 0.05
    assert _parsed("--method", "mp2", "--lr", "0.01", "--mixup", "0.5", "--push", "front") == (0.01, 0.5, "front")
    assert _parsed("--preset", "paper", "--method", "localsgd", "--mixup", "0") == (1e-3, 0.0, "front")
    assert ps_parser("").parse_args(["--preset", "paper"]).epochs == 5
    assert ps_parser("").parse_args(["--preset", "paper", "--epochs", "7"]).epochs == 7
    assert ps_parser("").parse_args(["--epochs", "2"]).epochs == 2


def test_the_measured_epochs_are_the_frontiers_long_budget():
    budget, rows = _long_budget_rows()
    assert ps_parser("").parse_args([]).epochs == budget
    # The budget where the tuned baseline stops rising: its best validation epochs fall inside it, not at its end.
    assert max(rows["baseline"]["best_val_epochs"]) < budget


@pytest.mark.parametrize("method", sorted(ROW_OF))
def test_each_methods_defaults_are_its_tuned_frontier_rows_choice(method):
    """The rate (and outer rate, sync interval, rank, ratio where the row sets them) that the tuned frontier chose
    at its long budget is what `--method NAME` alone gives."""
    _, rows = _long_budget_rows()
    chosen = _flags(rows[ROW_OF[method]])
    assert chosen["--method"] == method
    args = ps_parser("").parse_args(["--method", method])
    assert args.lr == float(chosen["--lr"]), f"{method}: --lr defaults to {args.lr}, the frontier chose {chosen['--lr']}"
    assert (args.epochs, args.mixup) == (int(chosen["--epochs"]), float(chosen["--mixup"]))
    opts = METHODS[method].Options()
    for flag, value in chosen.items():
        name = flag[2:].replace("-", "_")
        if hasattr(opts, name):
            assert getattr(opts, name) == type(getattr(opts, name))(value), f"{method}: {flag} defaults to " \
                f"{getattr(opts, name)}, the frontier's row {ROW_OF[method]} chose {value}"


def test_every_method_is_tuned_or_named_untuned():
    assert set(ROW_OF) | UNTUNED == set(METHODS)
    assert all(ps_parser("").parse_args(["--method", m]).lr == 0.003 for m in UNTUNED)
