"""results/scale: on-paper.md is what benchmarks/scale_on_paper.py prints now, its formulas hold, and the README's
table is the one its ps_step/results.json gives."""
from __future__ import annotations

import contextlib
import io

import pytest

from benchmarks import scale_on_paper as paper
from tests.cluster import ROOT

pytestmark = pytest.mark.unit


def test_the_committed_page_is_the_scripts_output():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        paper.main([])
    assert (ROOT / "results" / "scale" / "on-paper.md").read_text() == out.getvalue()


def test_the_formulas():
    assert paper.bytes_per_step("baseline", 10, 3) == (120, 120)
    assert paper.bytes_per_step("DiLoCo H=64", 64, 2) == (8, 8)
    n_in, n_out = paper.bytes_per_step("SparseLoCo H=64", 4096 * 64, 5)
    assert n_in == 5 * 128 * 14 / 8 and n_out == 5 * n_in  # every payload relayed to every worker
    assert paper.seconds(2e9, 1e9, 2, 8e9, duplex=True) == 1.0 and paper.seconds(2e9, 1e9, 2, 8e9, duplex=False) == 1.5


def test_the_readmes_table_is_the_records():
    from reports import scale
    from reports.readme import begin_marker, end_marker, read_json

    study = ROOT / "results" / "scale"
    text = (study / "README.md").read_text()
    block = text.split(begin_marker("scale", "ps-step"))[1].split(end_marker("scale", "ps-step"))[0].strip()
    assert block == scale.table(read_json(study / "ps_step" / "results.json")["results"])
    assert "| baseline | 2.8 (6.2) |" in block  # the table reads the medians and p90s of the record
