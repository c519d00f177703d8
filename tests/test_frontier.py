"""The accuracy-for-bytes grid: its report on hand-written runs, its command lines, skip-if-done, and a
failed run that is reported without stopping the grid (one tiny real run)."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.grid import GridError, Setting
from runtime.cmdline import merge as merge_flags
from reports import frontier
from tests.cluster import launcher_env, ROOT

MB = 1_000_000
FRONTIER = str(ROOT / "benchmarks" / "frontier.py")


def _summary(method: str, final: float, up: int, down: int, wall: float, *, test: list[float] | None = None,
             val: list[float] | None = None) -> dict:
    """A finished run's summary: its test curve ends at `final`; with `val`, a validation curve beside it."""
    test = test or [final - 0.05, final + 0.03, final]  # the best test epoch is never the one reported
    val = val if val is not None else [0.5, 0.6, 0.7][-len(test):] if len(test) <= 3 else None
    return {"method": method, "best_test_acc": max(test), "final_test_acc": test[-1], "test_acc_by_epoch": test,
            "val_acc_by_epoch": val, "bytes_pushed_total": up, "bytes_pulled_total": down, "wall_seconds": wall,
            "steps": 100, "workers": 4}


def _run(root: Path, label: str, seed: int, summary: dict | None, **meta) -> Path:
    run_dir = root / label / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
        epochs = len(summary["test_acc_by_epoch"])  # the per-epoch bytes and wall time a budget reads
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(
            {"epoch": e, "bytes_pushed": summary["bytes_pushed_total"] // epochs,
             "bytes_pulled": summary["bytes_pulled_total"] // epochs, "wall_seconds": summary["wall_seconds"] * e / epochs})
            + "\n" for e in range(1, epochs + 1)))
    if meta:
        (run_dir / frontier.MARKER).write_text(json.dumps(meta))
    return run_dir


@pytest.fixture
def grid_root(tmp_path: Path) -> Path:
    """baseline (2 seeds), topk (3), an MP² setting whose predictor's prior run and training are named, one
    whose are not, and a failed run."""
    root = tmp_path / "runs"
    for seed, (acc, wall) in enumerate([(0.80, 10.0), (0.82, 12.0)]):
        _run(root, "baseline", seed, _summary("baseline", acc, 100 * MB, 100 * MB, wall),
             flags=["--method", "baseline", "--seed", str(seed)])  # as benchmarks/frontier.py records them
    for seed, acc in enumerate([0.70, 0.74, 0.72]):
        _run(root, "topk-0.01", seed, _summary("topk", acc, 10 * MB, 20 * MB + seed * 3 * MB, 8.0))
    prior = tmp_path / "prior"
    prior.mkdir()
    (prior / "summary.json").write_text(json.dumps(_summary("baseline", 0.8, 100 * MB, 100 * MB, 20.0)))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"rows": [{"epoch": 0, "seconds": 3.0}, {"epoch": 1, "seconds": 4.5}]}))
    predictor = ["--method", "mp2", "--predictor", "p.npz"]
    _run(root, "mp2-trained", 0, _summary("mp2", 0.83, 5 * MB, 100 * MB, 9.0), flags=predictor,
         prior_run=str(prior), predictor_report=str(report))
    _run(root, "mp2-unnamed", 0, _summary("mp2", 0.99, 5 * MB, 100 * MB, 9.0), flags=predictor)
    bad = _run(root, "bad", 0, None, flags=["--method", "nope"])
    (bad / frontier.FAILED).write_text(json.dumps({"exit_code": 2, "reason": "exit 2: no such method", "log": "x.log"}))
    return root


@pytest.mark.unit
def test_report_figures_over_seeds_and_the_whole_cost(grid_root):
    result = frontier.build(grid_root, ["python", "-m", "reports", "frontier", "ROOT"])
    assert [s["budget_epochs"] for s in result["budgets"]] == [3]  # no tuning plan: the runs' length
    rows = {r["row"]: r for r in result["budgets"][0]["rows"]}
    assert set(rows) == {"baseline", "topk-0.01", "mp2-trained", "mp2-unnamed"}
    base = rows["baseline"]
    assert (base["seeds"], base["sel_acc_mean"], base["sel_acc_min"], base["sel_acc_max"]) == (2, pytest.approx(0.81), 0.80, 0.82)
    assert base["sel_acc_std"] == pytest.approx(statistics.stdev([0.80, 0.82]))
    assert base["final_acc_mean"] == pytest.approx(0.81) and base["best_val_epochs"] == [3, 3]
    assert base["total_wall_seconds"] == pytest.approx(11.0) and base["bytes_vs_baseline"] == pytest.approx(1.0)
    assert base["flags"] == "--method baseline" and not base["flags_differ"]  # seeds differ only in --seed
    topk = rows["topk-0.01"]
    assert topk["seeds"] == 3 and topk["sel_acc_mean"] == pytest.approx(0.72)
    assert topk["total_bytes"] == pytest.approx(10 * MB + 23 * MB)  # every seed's bytes, averaged
    assert topk["bytes_vs_baseline"] == pytest.approx(33 / 200)
    # The prior run's bytes and wall time and the predictor's training are added, and said to be.
    trained = rows["mp2-trained"]
    assert trained["total_bytes"] == pytest.approx(105 * MB + 200 * MB)
    assert trained["total_wall_seconds"] == pytest.approx(9.0 + 20.0 + 7.5)
    assert trained["cost_complete"] and "prior run" in trained["cost_counted"] and "predictor training" in trained["cost_counted"]
    assert trained["sel_acc_std"] is None  # one seed: no spread
    # A --predictor run whose origin is not named is a lower bound, and never the strongest.
    assert not rows["mp2-unnamed"]["cost_complete"] and "not counted" in rows["mp2-unnamed"]["cost_counted"]
    assert [s["row"] for s in result["budgets"][0]["strongest_by_budget"]] == ["topk-0.01", "baseline", "mp2-trained"]
    assert result["summary_line"].startswith(
        "At 3 epochs, strongest by byte budget (mean test accuracy at the best validation epoch over seeds): at ≤ 33.0 MB "
        "topk-0.01 (0.7200 ± 0.0200, 3 seeds); at ≤ 200.0 MB baseline (0.8100 ± 0.0141, 2 seeds); "
        "at ≤ 305.0 MB mp2-trained (0.8300, 1 seed)")
    assert [f["label"] for f in result["failed"]] == ["bad"]
    assert any("FAILED: bad seed 0: exit 2: no such method" in n for n in result["notes"])


@pytest.mark.unit
def test_the_selected_accuracy_is_the_test_accuracy_of_the_best_validation_epoch_never_the_best_test_epoch(tmp_path):
    # Epoch 2 has the best test accuracy; validation ties at epochs 1 and 3 and the earlier one is taken.
    _run(tmp_path, "m", 0, _summary("baseline", 0.85, 30 * MB, 30 * MB, 30.0, test=[0.80, 0.90, 0.85], val=[0.70, 0.65, 0.70]))
    run = frontier.read_root(tmp_path)[0][0]
    full, two = frontier.at_budget(run, 3), frontier.at_budget(run, 2)
    assert (full["selected"], full["final"], full["best_val_epoch"]) == (0.80, 0.85, 1)
    assert (two["selected"], two["final"], two["bytes_up"], two["wall"]) == (0.80, 0.90, 20 * MB, pytest.approx(20.0))
    assert frontier.at_budget(run, 4) is None  # a budget longer than the run
    # A record made before the validation split has only its final accuracy, and is not ranked.
    _run(tmp_path, "old", 0, {**_summary("baseline", 0.99, MB, MB, 1.0), "val_acc_by_epoch": None})
    rows = frontier.aggregate(frontier.read_root(tmp_path)[0], 3)
    old = next(r for r in rows if r["row"] == "old")
    assert old["sel_acc_mean"] is None and old["final_acc_mean"] == 0.99
    assert [s["row"] for s in frontier.strongest_by_budget(rows)] == ["m"]


@pytest.mark.unit
def test_a_tuned_row_takes_the_candidate_best_on_validation_at_each_budget(tmp_path):
    candidates = ["baseline__lr0.003", "baseline__lr0.0015", "baseline__lr0.006"]
    (tmp_path / frontier.TUNING).write_text(json.dumps({"tune_seed": 0, "budgets": [1, 3],
                                                        "rows": {"baseline": {"candidates": candidates}}}))
    curves = {  # (test, val) on seed 0; lr0.006 has the best test accuracy and is never chosen
        "baseline__lr0.003": ([0.70, 0.75, 0.80], [0.60, 0.70, 0.80]),
        "baseline__lr0.0015": ([0.71, 0.72, 0.73], [0.75, 0.72, 0.79]),
        "baseline__lr0.006": ([0.95, 0.96, 0.97], [0.75, 0.70, 0.78]),
    }
    for label, (test, val) in curves.items():
        _run(tmp_path, label, 0, _summary("baseline", test[-1], MB, MB, 3.0, test=test, val=val))
    for seed, acc in ((1, 0.82), (2, 0.84)):  # the other seeds of the candidate chosen at 3 epochs
        _run(tmp_path, "baseline__lr0.003", seed, _summary("baseline", acc, MB, MB, 3.0))
    result = frontier.build(tmp_path, ["x"])
    at1, at3 = ({r["row"]: r for r in s["rows"]} for s in result["budgets"])
    # At 1 epoch lr0.0015 and lr0.006 tie on validation (0.75): the one listed first wins.
    assert at1["baseline"]["label"] == "baseline__lr0.0015" and at1["baseline"]["seeds"] == 1
    assert at1["baseline"]["sel_acc_mean"] == 0.71
    assert at3["baseline"]["label"] == "baseline__lr0.003" and at3["baseline"]["seed_list"] == [0, 1, 2]
    assert at3["baseline"]["sel_acc_mean"] == pytest.approx((0.80 + 0.82 + 0.84) / 3)
    assert [t["best_val_acc"] for t in at3["baseline"]["tuning"]] == [0.80, 0.79, 0.78]
    assert "**lr0.003 0.8000**" in frontier.markdown(result)
    # A candidate not finished: the row waits, and the report says it is missing.
    for run_dir in (tmp_path / "baseline__lr0.006").iterdir():
        (run_dir / "summary.json").unlink()
    result = frontier.build(tmp_path, ["x"])
    assert all(not s["rows"] for s in result["budgets"])
    assert any(n.startswith("MISSING: baseline") for n in result["notes"])


@pytest.mark.unit
def test_strongest_line_ignores_a_costlier_weaker_setting():
    rows = [{"row": a, "label": a, "total_bytes": b, "sel_acc_mean": acc, "sel_acc_std": None, "seeds": 1, "cost_complete": True}
            for a, b, acc in [("cheap", 1 * MB, 0.7), ("worse", 5 * MB, 0.6), ("better", 9 * MB, 0.8)]]
    assert [s["row"] for s in frontier.strongest_by_budget(rows)] == ["cheap", "better"]
    control = {**rows[0], "row": "one-worker", "label": "one-worker", "sel_acc_mean": 0.99, "family": frontier.CONTROLS}
    assert [s["row"] for s in frontier.strongest_by_budget([*rows, control])] == ["cheap", "better"]  # not ranked


@pytest.mark.cluster
def test_report_files_from_the_command_line(grid_root, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "reports", "frontier", str(grid_root), "--out", str(out)], cwd=ROOT,
                          env=launcher_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / "frontier.json").read_text())
    origin = saved["provenance"]
    assert origin["argv"][1:4] == ["-m", "reports", "frontier"]
    assert set(origin["machine"]) == {"cores", "cpu"} and origin["python"] and origin["numpy"]
    with open(out / "frontier.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == ["topk-0.01", "mp2-unnamed", "baseline", "mp2-trained"]  # by total bytes
    assert float(rows[0]["bytes_vs_baseline"]) == pytest.approx(0.165)
    table = (out / "frontier.md").read_text()
    assert table.index("| topk-0.01 |") < table.index("| baseline |") < table.index("| mp2-trained |")
    assert "| ≥ 105.0 | ≥ 52.50% |" in table  # the unnamed predictor's cost is marked a lower bound
    assert saved["summary_line"] in table and "cores" in table and str(origin["git"]["commit"]) in table
    assert (out / "frontier.png").stat().st_size > 1000
    missing = subprocess.run([sys.executable, "-m", "reports", "frontier", str(tmp_path / "none")], cwd=ROOT, env=launcher_env(),
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "not a directory of runs" in missing.stderr


@pytest.mark.unit
def test_settings_flags_replace_the_common_ones():
    assert merge_flags(["--lr", "0.003", "--fit-input", "--epochs", "10"], ["--method", "dgc", "--lr", "0.05"]) == \
        ["--fit-input", "--epochs", "10", "--method", "dgc", "--lr", "0.05"]
    assert merge_flags(["--epochs=10", "--mixup", "0"], ["--epochs", "1"]) == ["--mixup", "0", "--epochs", "1"]
    assert Setting.parse("localsgd-H16=--method localsgd --sync-every 16").flags == ["--method", "localsgd", "--sync-every", "16"]
    with pytest.raises(GridError, match="LABEL=FLAGS"):
        Setting.parse("--method baseline")


def _frontier(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, FRONTIER, *args], cwd=ROOT, env=launcher_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.cluster
def test_dry_run_prints_each_command_and_marks_what_is_done(tmp_path):
    root = tmp_path / "runs"
    done = _frontier("--dry-run", "--root", str(root), "--seeds", "0,1", "--only", "baseline,dgc,diloco-H64")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    out = lambda label, seed: str(root / label / f"seed{seed}")  # noqa: E731
    common = "--model lenet5 --dataset fashion_mnist --epochs 30 --mixup 0"
    wait = "its other seeds wait for its tuning on seed 0 (the candidate chosen by validation accuracy)"
    assert lines == [  # every candidate on the tuning seed first; the other seeds once the choice is known
        *(f"python mp2_local.py --workers 4 --out {out('baseline__lr' + lr, 0)} {common} --method baseline --lr {lr} --seed 0"
          for lr in ("0.003", "0.0015", "0.006")),
        f"# baseline: {wait}",
        "# diloco-H64: not run yet: it waits for localsgd-H64's tuning (it inherits --lr)",
        *(f"python mp2_local.py --workers 4 --out {out('dgc__lr' + lr, 0)} {common} --method dgc --lr {lr} --seed 0"
          for lr in ("0.05", "0.025", "0.1")),
        f"# dgc: {wait}",
    ]
    # Tuned on seed 0 (a smoke length: every budget reads 3 epochs): the candidate best on validation runs the
    # other seeds; a run with a summary.json is marked done.
    for lr, val in (("0.003", [0.5, 0.6, 0.7]), ("0.0015", [0.5, 0.6, 0.8]), ("0.006", [0.9, 0.6, 0.7])):
        _run(root, "baseline__lr" + lr, 0, _summary("baseline", 0.8, MB, MB, 1.0, val=val))
    marked = _frontier("--dry-run", "--root", str(root), "--seeds", "0,1", "--only", "baseline", "--", "--epochs", "3")
    lines = marked.stdout.splitlines()
    assert [line.startswith("# done, skipped: ") for line in lines] == [True, True, True, False]
    assert lines[-1].startswith(f"python mp2_local.py --workers 4 --out {out('baseline__lr0.006', 1)} ") and \
        lines[-1].endswith("--method baseline --lr 0.006 --seed 1")
    # The ResNet-18 preset: its own flags, and the flags after -- replace the grid's.
    resnet = [c for c in _frontier("--dry-run", "--root", str(root), "--grid", "resnet18", "--", "--epochs", "1").stdout.splitlines()
              if not c.startswith("#")]
    assert len(resnet) == 18 and all("--model resnet18" in c and "--fit-input --train-images 30000" in c for c in resnet)
    assert all(" --epochs 1 " in c and "--epochs 12" not in c for c in resnet)
    # A user's mistake is one line.
    for bad, message in ((["--only", "nope"], "no setting nope"), (["--setting", "x=--seed 3"], "--seed is the grid's"),
                         (["--grid", str(tmp_path / "missing.json")], "not a preset")):
        failed = _frontier("--dry-run", "--root", str(root), *bad)
        assert failed.returncode == 2 and message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


@pytest.mark.cluster
def test_a_finished_run_is_skipped_not_rerun(tmp_path):
    root = tmp_path / "runs"
    run_dir = _run(root, "baseline", 0, _summary("baseline", 0.8, MB, MB, 1.0))
    before = (run_dir / "summary.json").read_text()
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"common": "--model lenet5 --dataset synthetic --epochs 3", "settings": ["baseline=--method baseline"]}))
    done = _frontier("--grid", str(grid), "--root", str(root), "--out", str(tmp_path / "out"), "--seeds", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "baseline seed 0: done already, skipped" in done.stdout and "started" not in done.stdout
    assert (run_dir / "summary.json").read_text() == before and not (run_dir / frontier.LOG).exists()
    assert json.loads((tmp_path / "out" / "frontier.json").read_text())["budgets"][0]["rows"][0]["row"] == "baseline"


@pytest.mark.cluster
def test_a_failed_run_is_reported_and_the_grid_goes_on(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "out"
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"common": "--model lenet5 --dataset synthetic --epochs 1 --worker-batch 50",
                                "seeds": [0], "settings": ["bad=--method baseline --lr nan", "ok=--method baseline"]}))
    args = ("--grid", str(grid), "--workers", "2", "--root", str(root), "--out", str(out))
    first = _frontier(*args, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    failed = next(i for i, line in enumerate(lines) if "bad seed 0: FAILED" in line)
    assert "--lr" in lines[failed] and "nan" in lines[failed] and "mp2_local.log" in lines[failed]
    assert any("ok seed 0: finished in" in line and "final test acc" in line for line in lines[failed + 1:])
    assert "--lr" in (root / "bad" / "seed0" / frontier.LOG).read_text()  # the run's output is in its log
    result = json.loads((out / "frontier.json").read_text())
    assert [r["row"] for r in result["budgets"][0]["rows"]] == ["ok"] and [f["label"] for f in result["failed"]] == ["bad"]
    # Resumed: the finished run is kept, the failed one is tried afresh (and fails again, replacing its record).
    second = _frontier(*args, timeout=300)
    assert second.returncode == 1
    assert "ok seed 0: done already, skipped" in second.stdout and "bad seed 0: started" in second.stdout
    assert json.loads((out / "frontier.json").read_text())["failed"][0]["exit_code"] == 2


# A shorter budget is the first epochs of a longer run (the frontier reads its 10-epoch budget from the 30-epoch
# runs): tests/test_exchanges.py's test_a_shorter_budget_is_the_first_epochs_of_a_longer_run, on its runs.


@pytest.mark.unit
def test_the_readmes_show_the_frontier_as_its_record_has_it():
    """README.md's and results/frontier/README.md's summary tables are the committed frontier.json's, figure for
    figure: `python -m reports frontier ROOT --readme ...` writes them, and a hand edit or a stale table fails here."""
    from reports import readme as blocks

    result = json.loads((ROOT / "results" / "frontier" / "frontier.json").read_text())
    expected = frontier.summary_table(result)
    assert "| baseline |" in expected or "| **baseline** |" in expected
    for path in (ROOT / "README.md", ROOT / "results" / "frontier" / "README.md"):
        text = path.read_text()
        begin, end = blocks.begin_marker(*frontier.README_BLOCK), blocks.end_marker(*frontier.README_BLOCK)
        assert text.count(begin) == 1 and text.count(end) == 1, path
        shown = text[text.index(begin) + len(begin):text.index(end)].strip()
        assert shown == expected.strip(), path


@pytest.mark.unit
def test_an_earlier_records_rows_are_carried_for_rows_without_runs_and_ranked_with_the_new(grid_root, tmp_path):
    earlier = frontier.build(grid_root, ["python", "-m", "reports", "frontier", "ROOT"])
    earlier["provenance"]["git"] = {"commit": "abc1234def", "dirty": False}
    record = tmp_path / "earlier.json"
    record.write_text(json.dumps(earlier))
    # A later session holds only a new row and a rerun of topk (its figures replace the carried ones).
    later = tmp_path / "later"
    _run(later, "sparse-new", 0, _summary("sparseloco", 0.90, 1 * MB, 1 * MB, 5.0))
    _run(later, "topk-0.01", 0, _summary("topk", 0.60, 10 * MB, 10 * MB, 8.0))
    result = frontier.build(later, ["python", "-m", "reports", "frontier", "ROOT"], carried_record=record)
    rows = {r["row"]: r for r in result["budgets"][0]["rows"]}
    assert set(rows) == {"baseline", "topk-0.01", "mp2-trained", "mp2-unnamed", "sparse-new"}
    assert rows["baseline"]["carried_from"] == "abc1234def" and "carried_from" not in rows["sparse-new"]
    assert rows["topk-0.01"].get("carried_from") is None and rows["topk-0.01"]["sel_acc_mean"] == pytest.approx(0.60)
    # Fractions are taken against the carried baseline, and the new row leads the cheapest budget.
    assert rows["sparse-new"]["bytes_vs_baseline"] == pytest.approx(2 / 200)
    assert result["budgets"][0]["strongest_by_budget"][0]["row"] == "sparse-new"
    assert any("Carried from an earlier record" in n and "baseline (abc1234)" in n for n in result["notes"])
    assert "| baseline (carried) |" in frontier.markdown(result)
    with pytest.raises(frontier.ReportError, match="not a frontier record"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        frontier.build(later, ["x"], carried_record=bad)


@pytest.mark.cluster
def test_a_kept_record_is_read_back_where_the_run_root_is_gone_and_the_report_made_from_records_alone(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "out"
    # One run finished in an earlier session: its root is gone, its record kept (committed) in OUT/runs.
    _run(out / "runs", "baseline", 0, _summary("baseline", 0.8, MB, MB, 1.0), flags=["--method", "baseline"])
    # One finished here, by another grid process: its record is kept at the end.
    _run(root, "topk", 0, _summary("topk", 0.7, MB // 10, MB // 10, 1.0), flags=["--method", "topk"])
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"common": "--model lenet5 --dataset synthetic --epochs 3",
                                "settings": ["baseline=--method baseline", "topk=--method topk"]}))
    done = _frontier("--grid", str(grid), "--root", str(root), "--out", str(out), "--seeds", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 finished run(s) read back" in done.stdout and "started" not in done.stdout
    assert (root / "baseline" / "seed0" / "summary.json").exists()
    kept = sorted(str(p.relative_to(out / "runs")) for p in (out / "runs").rglob("*.json*"))
    assert kept == ["baseline/seed0/frontier-run.json", "baseline/seed0/metrics.jsonl", "baseline/seed0/summary.json",
                    frontier.TUNING, "topk/seed0/frontier-run.json", "topk/seed0/metrics.jsonl", "topk/seed0/summary.json"]
    again = frontier.build(out / "runs", ["x"])
    assert {r["row"] for r in again["budgets"][0]["rows"]} == {"baseline", "topk"}
