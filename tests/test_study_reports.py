"""The study reports of results/ (python -m reports methods / models / unseen / soak) on hand-written records:
the tables' figures, the README blocks they are written into, and the errors for records that are not there."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reports import accuracy, methods, models, readme, soak, unseen
from tests.cluster import ROOT

pytestmark = pytest.mark.unit


def _write(path: Path, value: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def _readme(path: Path, study: str, *names: str) -> Path:
    blocks = "".join(f"before {n}\n{readme.begin_marker(study, n)}\nold\n{readme.end_marker(study, n)}\nafter {n}\n" for n in names)
    path.write_text("# title\n" + blocks)
    return path


def test_a_block_is_replaced_and_the_prose_around_it_kept(tmp_path):
    doc = _readme(tmp_path / "README.md", "methods", "table", "other")
    readme.write_blocks(doc, "methods", {"table": "| a |\n"})
    text = doc.read_text()
    assert f"{readme.begin_marker('methods', 'table')}\n| a |\n{readme.end_marker('methods', 'table')}" in text
    assert "old" in text.split("before other")[1]  # the other block untouched
    assert text.startswith("# title\nbefore table\n") and text.rstrip().endswith("after other")


def test_a_missing_block_leaves_the_readme_as_it_was(tmp_path):
    doc = _readme(tmp_path / "README.md", "methods", "table")
    before = doc.read_text()
    with pytest.raises(readme.ReportError, match="exactly one block methods nothing"):
        readme.write_blocks(doc, "methods", {"table": "new\n", "nothing": "x\n"})
    assert doc.read_text() == before


def _summary(method: str, final: float, up: int, down: int, **extra) -> dict:
    """A run's summary whose best test epoch (final + 0.02) no report may show; without test_acc_at_best_val
    in `extra`, a record made before the validation split."""
    return {"method": method, "lr": 0.003, "best_test_acc": final + 0.02, "final_test_acc": final,
            "bytes_pushed_total": up, "bytes_pulled_total": down, "wall_seconds": 100.4, **extra}


def test_the_honest_accuracy_is_at_the_best_validation_epoch_else_the_final_one():
    assert accuracy.honest_accuracy({"best_test_acc": 0.9, "test_acc_at_best_val": 0.8, "final_test_acc": 0.7}) == (0.8, "at best val")
    assert accuracy.honest_accuracy({"best_test_acc": 0.9, "test_acc_at_best_val": None, "final_test_acc": 0.7}) == (0.7, "final")
    assert accuracy.honest_accuracy({"best_test_acc": 0.9, "test_acc_by_epoch": [0.9, 0.6]}) == (0.6, "final")
    assert accuracy.honest_accuracy({"test_acc_at_best_val": "", "final_test_acc": "0.75"}) == (0.75, "final")  # a CSV row
    with pytest.raises(readme.ReportError, match="neither"):
        accuracy.honest_accuracy({"best_test_acc": 0.9})


def test_methods_rows_are_shares_of_the_baseline(tmp_path):
    _write(tmp_path / "s" / "baseline.json", _summary("baseline", 0.87, 1000, 2000, test_acc_at_best_val=0.88))
    _write(tmp_path / "s" / "topk.json", _summary("topk", 0.84, 20, 150, method_options={"ratio": 0.01}))
    doc = _readme(tmp_path / "README.md", "methods", "table")
    methods.report(tmp_path / "s", doc)
    text = doc.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0] == "| baseline | baseline |  | 0.003 | 0.8800 | 0.8700 | 1,000 | 2,000 | 100.00 % | 100.00 % | 100 |"
    assert rows[1] == "| topk | topk | ratio=0.01 | 0.003 | 0.8400† | 0.8400 | 20 | 150 | 2.00 % | 7.50 % | 100 |"
    assert accuracy.HEADER in text and accuracy.FOOTNOTE in text and "0.8900" not in text and "0.8600" not in text


def test_methods_without_a_baseline_leave_the_shares_blank_and_an_empty_directory_is_an_error(tmp_path):
    _write(tmp_path / "s" / "topk.json", _summary("topk", 0.85, 20, 150))
    [row] = [line for line in methods.table(methods.read_summaries(tmp_path / "s")).splitlines() if line.startswith("| topk")]
    assert row.endswith("| 150 |  |  | 100 |")
    (tmp_path / "empty").mkdir()
    with pytest.raises(readme.ReportError, match="holds no NAME.json"):
        methods.read_summaries(tmp_path / "empty")


DATA = {"train_images": 100, "test_images": 50, "transforms": []}


def _run_summary(curve: list[float], up: int, **extra) -> dict:
    return {**_summary("mp2", curve[-1], up, 4000), "model": "resnet18", "dataset": "fashion_mnist", "data": DATA,
            "workers": 4, "epochs": len(curve), "test_acc_by_epoch": curve, "pushed_layers": ["stem"],
            "pushed_params": 6, "total_params": 100, "snapshots": 8, **extra}


def _predictor_report(curve: list[float]) -> dict:
    rows = [{"epoch": e, "seconds": 2.0, "test_assembled_acc": a} for e, a in enumerate(curve)]
    return {"best": {"epoch": len(curve) - 1, "test_assembled_acc": curve[-1], "test_own_acc": 0.9, "val_assembled_acc": 0.8},
            "rows": rows, "train_snapshots": 6, "heldout": [1, 2], "config": {"head_rank": 8}}


def test_models_attempts_share_their_baseline_and_go_to_results_json_and_the_readme(tmp_path):
    # The baseline's best validation epoch is its first; MP²'s record has no validation figures (its final epoch).
    _write(tmp_path / "resnet18" / "baseline-summary.json",
           _run_summary([0.86, 0.85], 10_000_000_000, test_acc_at_best_val=0.86, best_val_epoch=1))
    _write(tmp_path / "resnet18" / "mp2-summary.json", _run_summary([0.72, 0.84], 500_000_000))
    _write(tmp_path / "resnet18" / "predictor-report.json", _predictor_report([0.1, 0.5, 0.6]))
    _readme(tmp_path / "README.md", "models", "attempts", "epochs", "predictor")
    rows = models.report(tmp_path)
    assert [r["attempt"] for r in rows] == ["resnet18"]  # the other attempts have no records here
    r = rows[0]
    assert r["gap_points"] == pytest.approx(2.0) and r["pushed_vs_baseline"] == pytest.approx(0.05)
    assert r["predictor_seconds"] == 6.0 and r["predictor_head_rank"] == 8 and r["predictor_epochs"] == 2
    written = json.loads((tmp_path / "results.json").read_text())["attempts"][0]
    assert (written["mp2_test_acc"], written["mp2_test_acc_kind"]) == (0.84, "final")
    assert (written["baseline_test_acc"], written["baseline_test_acc_kind"]) == (0.86, "at best val")
    text = (tmp_path / "README.md").read_text()
    assert "| ResNet-18, faithful (push front) | 6.00% | 0.8600 | 0.8400† | 2.00 | 10,000 / 500 | 0 | 0.6000 vs 0.9000 (epoch 2 of 2) | 100 / 100 |" in text
    assert accuracy.FOOTNOTE in text and "0.8700" not in text  # the baseline's best test epoch (made up) is not shown
    assert "| baseline (`resnet18`) | 0.8600 | 0.8500 |" in text
    assert "| ResNet-18, faithful (push front) (own 0.9000) | 0.1000 | 0.5000 | 0.6000 |" in text


def test_models_refuse_an_attempt_whose_baseline_saw_other_data(tmp_path):
    _write(tmp_path / "resnet18" / "baseline-summary.json", _run_summary([0.86], 10, data={**DATA, "train_images": 7}))
    _write(tmp_path / "resnet18" / "mp2-summary.json", _run_summary([0.84], 1))
    _write(tmp_path / "resnet18" / "predictor-report.json", _predictor_report([0.1]))
    with pytest.raises(readme.ReportError, match="resnet18: .* not train on the same data"):
        models.read_attempts(tmp_path)
    with pytest.raises(readme.ReportError, match="holds no attempt"):
        models.read_attempts(tmp_path / "nothing")


def _online(rounds: list[bool], switch: int | None = 4, **stats) -> dict:
    events = [{"event": "trained", "round": i + 1, "passed": p} for i, p in enumerate(rounds)]
    if switch is not None:
        events.insert(1, {"event": "switch to mp2", "round": 1, "step": switch})
    return {"method_stats": {"online": {"events": events, "rounds": len(rounds), **stats}}}


def test_unseen_figures_of_one_run():
    s = {**_online([True, False, True, True]), "best_test_acc": 0.9, "test_acc_by_epoch": [0.5, 0.9, 0.7, 0.8],
         "bytes_pushed_total": 10}
    assert unseen.switch_step(s) == 4 and unseen.switch_step({"method": "baseline"}) is None
    assert unseen.later_rounds(s) == (2, 3)  # rounds 2-4, of which 3 and 4 replaced the live predictor
    # No validation figures: the last epoch's test accuracy (not the best, 0.9).
    assert unseen.curve_figures(s) == {"test": 0.8, "kind": "final", "last3": pytest.approx(0.8), "bytes": 10}
    chosen = unseen.curve_figures({**s, "test_acc_at_best_val": 0.7})
    assert (chosen["test"], chosen["kind"]) == (0.7, "at best val")
    transcribed = {"best_test_acc": 0.88, "final_test_acc": 0.87, "last3_test_acc_mean": 0.86, "bytes_pushed_total": 5}
    assert unseen.curve_figures(transcribed) == {"test": 0.87, "kind": "final", "last3": 0.86, "bytes": 5}
    assert unseen.points(-0.0056) == "−0.56" and unseen.points(0.0051) == "+0.51"


def test_unseen_digits_table_and_the_records_it_needs(tmp_path):
    digits = {"steps": 420}
    _write(tmp_path / "digits-baseline" / "summary.json", {**_summary("baseline", 0.98, 1000, 1000), **digits})
    for i, (name, _) in enumerate(unseen.DIGITS[1:]):
        # The first MP² run has validation figures: its test accuracy at the best validation epoch, 0.975.
        val = {"test_acc_at_best_val": 0.975} if i == 0 else {}
        _write(tmp_path / name / "summary.json", {**_summary("mp2", 0.97 - i / 100, 100, 1000), **digits, **val,
                                                  "phases": {"full": 13}, **_online([True, True], stalled_seconds=61.4)})
    table = unseen.digits_table(tmp_path)
    rows = table.splitlines()
    assert rows[2] == "| baseline | 0.9800† |  | 0.0 MB | 100.0 % | 420 of 420 |  |  |  |"
    assert rows[3].endswith("| 0.9750 | −0.50 | 0.0 MB | 10.0 % | 13 of 420 | 4 | 2 | 61 |")
    assert rows[4].endswith("| 0.9600† | −2.00 | 0.0 MB | 10.0 % | 13 of 420 | 4 | 2 | 61 |")
    assert accuracy.FOOTNOTE in table and "0.9900" not in table
    (tmp_path / "digits-fixed" / "summary.json").unlink()
    with pytest.raises(readme.ReportError, match="no record of the run digits-fixed"):
        unseen.digits_table(tmp_path)
    _write(tmp_path / "digits-fixed" / "transcribed.json", {"best_test_acc": 0.9})
    with pytest.raises(readme.ReportError, match="lacks final_test_acc, last3_test_acc_mean, bytes_pushed_total"):
        unseen.read_run(tmp_path, "digits-fixed")


def test_unseen_seeds_and_variants_compare_the_test_accuracy_chosen_by_validation(tmp_path):
    for i, (base, suffix) in enumerate(zip(unseen.SEED_BASELINES, unseen.SEED_SUFFIXES)):
        # Baselines made before the validation split (their final epoch); MP² runs with validation figures.
        _write(tmp_path / base / "summary.json", {**_summary("baseline", 0.88, 1000, 1000), "test_acc_by_epoch": [0.86, 0.87, 0.88]})
        for _, prefix in unseen.VARIANTS:
            _write(tmp_path / (prefix + suffix) / "summary.json",
                   {**_summary("mp2", 0.86, 140, 1000), "test_acc_by_epoch": [0.85, 0.87, 0.86],
                    "test_acc_at_best_val": 0.87 + i / 1000, **_online([True, i % 2 == 0])})
    seeds = unseen.seeds_table(tmp_path)
    assert "| fashion-online-fh-stage6-h05w-seed1 | 0.8800† / 0.8700 | 0.8710 / 0.8600 | −0.90 | 14.0 % |" in seeds
    assert "| **mean of 4** | 0.8800† / 0.8700 | 0.8715 / 0.8600 | **−0.85** | 14.0 % |" in seeds
    assert accuracy.FOOTNOTE in seeds and "0.9000" not in seeds
    variants = unseen.variants_table(tmp_path)
    assert variants.splitlines()[-3].endswith("| −0.85 | −1.00, −0.90, −0.80, −0.70 | 2 of 4 |")


def test_soak_table_counts_failures_and_retries():
    runs = [{"exit": 0, "retries": 0, "seconds": 30.0, "final_test_acc": 0.8, "steps": 3600, "recoveries": []},
            {"exit": 1, "retries": 2, "seconds": 50.0, "final_test_acc": None, "steps": 0,
             "recoveries": [{"step": 5}]},
            {"exit": 0, "retries": 1, "seconds": 40.0, "final_test_acc": 0.84, "steps": 3600,
             "recoveries": [{"step": 9}, {"step": 70}]}]
    assert (soak.table({"results": runs}).splitlines()[-1]
            == "| 3 | 7,200 | 1 | 3 | 3 | 30.0 / 40.0 / 50.0 | 0.8000 / 0.8400 |")


def test_the_command_says_what_is_missing_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "reports", "unseen", str(tmp_path / "none")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == f"reports: error: {tmp_path / 'none'} is not a directory of run records (NAME/summary.json)"
