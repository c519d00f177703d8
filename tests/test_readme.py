"""README.md's figures are its records' figures.

Its frontier tables are generated (`python -m reports frontier ... --readme README.md`, checked in
tests/test_frontier.py). Every other figure sits in the prose: each phrase that states one is rebuilt here from
the record it comes from (results/frontier/frontier.json, results/main-job/comparison.json,
results/reliability/soak-lenet5.json, results/network/results.csv) and from the code's defaults, and must be
in the README as built. A number left in the prose that no phrase here accounts for fails too: a new figure
comes with its check. The same for results/models' speed table, which speed.json holds.
"""
from __future__ import annotations

import csv
import json
import math
import re

import pytest

from reports import readme as blocks
from tests.cluster import ROOT

pytestmark = pytest.mark.unit

README = ROOT / "README.md"
RESULTS = ROOT / "results"
LIMIT = 12_000  # bytes: a README that a newcomer reads in five minutes
# Digits in the prose that are names, a citation, versions or settings of the grid, not measured figures.
WORDING = ("255 (2024) 110883", "Apache-2.0", "×½, ×1 and ×2", "LeNet-5", "ResNet-18", "VGG-15", "4 workers",
           "Below 1 %", "4-bit", "TensorFlow 2.21", "127.0.0.1", "H=16", "H=64")


def prose(text: str) -> str:
    """The README's own words: generated blocks, code, inline code and link targets left out; one space per gap."""
    text = re.sub(r"<!-- reports (\S+) (\S+): begin.*?<!-- reports \1 \2: end -->", "", text, flags=re.S)
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return " ".join(text.split())


def _rows(budget: dict) -> dict[str, dict]:
    return {r["row"]: r for r in budget["rows"]}


def _points(difference: float) -> str:
    return f"{100 * difference:.1f}"


def frontier_phrases() -> list[str]:
    record = json.loads((RESULTS / "frontier" / "frontier.json").read_text())
    (short, s), (long, b) = sorted((x["budget_epochs"], _rows(x)) for x in record["budgets"])

    def acc(rows: dict, row: str) -> str:
        return f"{rows[row]['sel_acc_mean']:.4f}"

    def spread(rows: dict, row: str) -> str:
        return f"{acc(rows, row)} ± {rows[row]['sel_acc_std']:.4f}"

    def share(rows: dict, row: str) -> str:
        return f"{100 * rows[row]['bytes_vs_baseline']:.2f} %"

    def sel(rows: dict, row: str) -> float:
        return rows[row]["sel_acc_mean"]

    from runtime.methods.localsgd import LocalSGD, LocalSGDOptions
    from runtime.presets import epochs_of

    # What the prose asserts beside its figures: the rows it names are where they say.
    assert sel(s, "sparseloco-H16") > sel(s, "sparseloco-H64")  # the better choice at the short budget
    assert sel(b, "diloco-H64") <= sel(b, "localsgd-H64")  # the outer step adds nothing at the long budget
    tuned = [r for r in s if s[r]["seeds"] > 1]
    assert max(tuned, key=lambda r: sel(s, r)) == "diloco-H16"  # the best row at the short budget
    full = [r for r in tuned if s[r]["bytes_vs_baseline"] >= 1]
    assert max(full, key=lambda r: sel(s, r)) == "sync" and sel(s, "sync") < sel(s, "diloco-H16")
    assert 0.5 <= 100 * (sel(b, "baseline-1worker") - sel(b, "diloco-H64-1worker")) < 1.5  # "costs a point"
    dense_lag = {_points(max(sel(b, "localsgd-H64"), sel(b, "sparseloco-H64")) - sel(b, r)) for r in ("sync", "baseline")}
    assert len(dense_lag) == 1, dense_lag
    compressors = [100 * b[r]["bytes_vs_baseline"] for r in ("dgc", "topk-0.01", "powersgd-R2")]
    assert any("mp2-online" in note and "MISSING" in note for note in record["notes"])  # online MP² at H=1
    assert not (RESULTS / "frontier" / "resnet18").exists() and not (RESULTS / "frontier" / "vgg15").exists()
    assert LocalSGDOptions().sync_every == 64  # "H=64" below names the default's row
    times = b["mp2-online-H16"]["total_bytes"] / b["sparseloco-H64"]["total_bytes"]
    return [
        "the rows still missing (online MP² at H=1; ResNet-18 and VGG-15)",
        f"at {long} epochs it reaches {spread(b, 'sparseloco-H64')} on **{share(b, 'sparseloco-H64')}** of the "
        f"baseline's bytes",
        f"{_points(sel(b, 'sparseloco-H64') - sel(b, 'baseline'))} points above the baseline ({acc(b, 'baseline')})",
        f"At {short} epochs H=16 ({share(s, 'sparseloco-H16')}) is the better choice ({acc(s, 'sparseloco-H16')})",
        f"every {LocalSGDOptions().sync_every} steps, rate {LocalSGD.default_lr:g}): {acc(b, 'localsgd-H64')} at "
        f"{share(b, 'localsgd-H64')} of the bytes",
        f"At {long} epochs DiLoCo's outer step adds nothing once the inner rate is tuned ({acc(b, 'diloco-H64')})",
        f"at {short} epochs it leads by {_points(sel(s, 'diloco-H64') - sel(s, 'localsgd-H64'))} (H=64) to "
        f"{_points(sel(s, 'diloco-H16') - sel(s, 'localsgd-H16'))} points (H=16: {acc(s, 'diloco-H16')}, the best row "
        f"at {short} epochs)",
        f"at every step (H=1) it fails ({sel(b, 'diloco-H1'):.2f})",
        f"reaches {spread(b, 'streaming-H64')} at {long} epochs on {share(b, 'streaming-H64')} of the bytes, "
        f"{_points(sel(b, 'diloco-H64') - sel(b, 'streaming-H64'))} below DiLoCo at H=64 on "
        f"{100 * b['streaming-H64']['total_bytes'] / b['diloco-H64']['total_bytes']:.0f} % of its bytes",
        f"trail at {math.floor(min(compressors))}–{math.ceil(max(compressors))} % of the bytes: DGC {acc(b, 'dgc')}, "
        f"Top-k (1 %) {acc(b, 'topk-0.01')}, PowerSGD (rank 2) {acc(b, 'powersgd-R2')}",
        f"is the best full-byte row at {short} epochs ({acc(s, 'sync')}) but below DiLoCo H=16",
        f"at {long} epochs it and the baseline trail periodic averaging and SparseLoCo by {dense_lag.pop()} points",
        f"at H=16 reaches {acc(b, 'mp2-online-H16')} at {share(b, 'mp2-online-H16')} of the bytes, "
        f"{_points(sel(b, 'sparseloco-H64') - sel(b, 'mp2-online-H16'))} points below SparseLoCo H=64 at about "
        f"{round(times, -1):.0f} times its bytes",
        f"it is lower still ({acc(b, 'mp2-diloco-H16')}); sent SparseLoCo's way (H=64) it reaches "
        f"{acc(b, 'mp2-sparseloco-H64')} at {share(b, 'mp2-sparseloco-H64')}, "
        f"{_points(sel(b, 'sparseloco-H64') - sel(b, 'mp2-sparseloco-H64'))} points below SparseLoCo at "
        f"{b['mp2-sparseloco-H64']['total_bytes'] / b['sparseloco-H64']['total_bytes']:.0f} times its bytes",
        f"(here: {epochs_of('measured')} epochs, every {LocalSGDOptions().sync_every} steps, rate "
        f"{LocalSGD.default_lr:g})",
    ]


def main_job_phrases() -> list[str]:
    record = json.loads((RESULTS / "main-job" / "comparison.json").read_text())
    rows = {r["run"]: r for r in record["rows"]}
    whole = {w["route"].split(" ")[0]: w for w in record["whole_cost"]}  # baseline, local, MP²
    (stages,) = [n for n in record["notes"] if n.startswith("stage wall times:")]
    seconds = sum(int(s) for s in re.findall(r"(\d+) s\b", stages))
    base, mp2, local = whole["baseline"], whole["MP²"], whole["local"]
    return [
        f"The main job takes about {round(seconds / 60)} minutes on {record['provenance']['machine']['cores']} cores",
        f"MP² {rows['mp2']['test_acc']:.4f} pushing "
        f"{100 * rows['mp2']['bytes_pushed_total'] / rows['baseline']['bytes_pushed_total']:.1f} % of the baseline's "
        f"bytes, but {100 * mp2['bytes'] / base['bytes']:.0f} % of its bytes and "
        f"{mp2['wall_seconds'] / base['wall_seconds']:.1f} times its time counted whole; local SGD "
        f"{local['test_acc']:.4f} at {100 * local['bytes'] / base['bytes']:.0f} %",
    ]


def results_phrases() -> list[str]:
    soak = json.loads((RESULTS / "reliability" / "soak-lenet5.json").read_text())
    (steps,) = {r["steps"] for r in soak["results"]}
    with open(RESULTS / "network" / "results.csv", newline="") as f:
        rates = list(dict.fromkeys(row["rate"] for row in csv.DictReader(f)))
    shown = [re.sub(r"(\d+)(m|g)bit", lambda m: f"{m[1]} {m[2].upper()}bit/s", rate) for rate in rates]
    return [f"({soak['runs']} runs of {steps:,} steps, {soak['failures']} failed)",
            f"emulated links of {' and '.join(shown)}"]


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size <= LIMIT, f"README.md is {size:,} bytes; keep it to {LIMIT:,} (move the detail to docs/ or results/)"


def test_every_figure_in_the_readme_prose_is_its_records():
    text = prose(README.read_text())
    missing = []
    for phrase in [*frontier_phrases(), *main_job_phrases(), *results_phrases()]:
        if phrase not in text:
            missing.append(phrase)
        text = text.replace(phrase, " ")
    assert missing == [], "README.md does not say what its records say; it should read:\n" + "\n".join(missing)
    for words in WORDING:
        text = text.replace(words, " ")
    unchecked = [text[max(0, m.start() - 30):m.end() + 10] for m in re.finditer(r"\d", text)]
    assert unchecked == [], ("figures in README.md that no check ties to a record (add a phrase to "
                             "tests/test_readme.py):\n" + "\n".join(unchecked))


def test_the_prose_check_sees_a_changed_figure_and_an_unchecked_one():
    shown = "x <!-- reports a b: begin -->\n| 0.1 |\n<!-- reports a b: end --> `--lr 0.1` [t](f1.md) y 2"
    assert prose(shown) == "x [t] y 2"
    assert blocks.begin_marker("frontier", "summary").startswith("<!-- reports frontier summary: begin")


def test_the_models_speed_table_is_its_record():
    """results/models/speed.md (benchmarks/model_speed.py's printed table) and the table in that folder's README
    are speed.json's figures, as the benchmark formats them."""
    record = json.loads((RESULTS / "models" / "speed.json").read_text())
    expected = [f"| {r['model']} | {r['parameters']:,} | {1000 * r['step_seconds']:.0f} | "
                f"{1000 * r['eval_seconds_per_500']:.0f} | {r['epoch_seconds'] / 60:.1f} | {r['epoch_eval_seconds']:.0f} |"
                for r in record["models"]]
    for path in (RESULTS / "models" / "speed.md", RESULTS / "models" / "README.md"):
        lines = path.read_text().splitlines()
        shown = [line for line in lines if any(line.startswith(f"| {r['model']} | ") for r in record["models"])]
        assert shown == expected, path
