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

from benchmarks.grid import GridError, Setting, merge_flags
from reports import frontier
from tests.cluster import launcher_env, ROOT

MB = 1_000_000
FRONTIER = str(ROOT / "benchmarks" / "frontier.py")


def _summary(method: str, best: float, up: int, down: int, wall: float) -> dict:
    return {"method": method, "best_test_acc": best, "final_test_acc": best - 0.01, "bytes_pushed_total": up,
            "bytes_pulled_total": down, "wall_seconds": wall, "steps": 100, "workers": 4}


def _run(root: Path, label: str, seed: int, summary: dict | None, **meta) -> Path:
    run_dir = root / label / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
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
    rows = {r["label"]: r for r in result["rows"]}
    assert set(rows) == {"baseline", "topk-0.01", "mp2-trained", "mp2-unnamed"}
    base = rows["baseline"]
    assert (base["seeds"], base["best_acc_mean"], base["best_acc_min"], base["best_acc_max"]) == (2, pytest.approx(0.81), 0.80, 0.82)
    assert base["best_acc_std"] == pytest.approx(statistics.stdev([0.80, 0.82]))
    assert base["total_wall_seconds"] == pytest.approx(11.0) and base["bytes_vs_baseline"] == pytest.approx(1.0)
    assert base["flags"] == "--method baseline" and not base["flags_differ"]  # seeds differ only in --seed
    topk = rows["topk-0.01"]
    assert topk["seeds"] == 3 and topk["best_acc_mean"] == pytest.approx(0.72)
    assert topk["total_bytes"] == pytest.approx(10 * MB + 23 * MB)  # every seed's bytes, averaged
    assert topk["bytes_vs_baseline"] == pytest.approx(33 / 200)
    # The prior run's bytes and wall time and the predictor's training are added, and said to be.
    trained = rows["mp2-trained"]
    assert trained["total_bytes"] == pytest.approx(105 * MB + 200 * MB)
    assert trained["total_wall_seconds"] == pytest.approx(9.0 + 20.0 + 7.5)
    assert trained["cost_complete"] and "prior run" in trained["cost_counted"] and "predictor training" in trained["cost_counted"]
    assert trained["best_acc_std"] is None  # one seed: no spread
    # A --predictor run whose origin is not named is a lower bound, and never the strongest.
    assert not rows["mp2-unnamed"]["cost_complete"] and "not counted" in rows["mp2-unnamed"]["cost_counted"]
    assert [s["label"] for s in result["strongest_by_budget"]] == ["topk-0.01", "baseline", "mp2-trained"]
    assert result["summary_line"].startswith(
        "Strongest by byte budget (mean best test accuracy over seeds): at ≤ 33.0 MB the best is topk-0.01 (0.7200 ± 0.0200, 3 seeds); "
        "at ≤ 200.0 MB the best is baseline (0.8100 ± 0.0141, 2 seeds); at ≤ 305.0 MB the best is mp2-trained (0.8300, 1 seed)")
    assert [f["label"] for f in result["failed"]] == ["bad"]
    assert any("FAILED: bad seed 0: exit 2: no such method" in n for n in result["notes"])


@pytest.mark.unit
def test_strongest_line_ignores_a_costlier_weaker_setting():
    rows = [{"label": a, "total_bytes": b, "best_acc_mean": acc, "best_acc_std": None, "seeds": 1, "cost_complete": True}
            for a, b, acc in [("cheap", 1 * MB, 0.7), ("worse", 5 * MB, 0.6), ("better", 9 * MB, 0.8)]]
    assert [s["label"] for s in frontier.strongest_by_budget(rows)] == ["cheap", "better"]


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
    assert [r["label"] for r in rows] == ["topk-0.01", "mp2-unnamed", "baseline", "mp2-trained"]  # by total bytes
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
    done = _frontier("--dry-run", "--root", str(root), "--seeds", "0,1", "--only", "baseline,dgc,localsgd-H16")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    out = lambda label, seed: str(root / label / f"seed{seed}")  # noqa: E731
    common = "--model lenet5 --dataset fashion_mnist --epochs 10"
    assert lines == [
        f"python mp2_local.py --workers 4 --out {out('baseline', 0)} {common} --lr 0.003 --mixup 0 --method baseline --seed 0",
        f"python mp2_local.py --workers 4 --out {out('baseline', 1)} {common} --lr 0.003 --mixup 0 --method baseline --seed 1",
        f"python mp2_local.py --workers 4 --out {out('localsgd-H16', 0)} {common} --lr 0.003 --mixup 0 --method localsgd --sync-every 16 --seed 0",
        f"python mp2_local.py --workers 4 --out {out('localsgd-H16', 1)} {common} --lr 0.003 --mixup 0 --method localsgd --sync-every 16 --seed 1",
        f"python mp2_local.py --workers 4 --out {out('dgc', 0)} {common} --mixup 0 --method dgc --lr 0.05 --seed 0",
        f"python mp2_local.py --workers 4 --out {out('dgc', 1)} {common} --mixup 0 --method dgc --lr 0.05 --seed 1",
    ]
    # The whole default grid: 17 settings × 3 seeds; the ResNet-18 preset: 6 settings, one seed, its own flags.
    assert len(_frontier("--dry-run", "--root", str(root)).stdout.splitlines()) == 51
    resnet = _frontier("--dry-run", "--root", str(root), "--grid", "resnet18", "--", "--epochs", "1").stdout.splitlines()
    assert len(resnet) == 6 and all("--model resnet18" in c and "--fit-input --train-images 10000" in c for c in resnet)
    assert all(" --epochs 1 " in c and "--epochs 8" not in c for c in resnet)  # the flags after -- replace the grid's
    # A run with a summary.json is marked done.
    _run(root, "baseline", 1, _summary("baseline", 0.8, MB, MB, 1.0))
    marked = _frontier("--dry-run", "--root", str(root), "--seeds", "0,1", "--only", "baseline").stdout.splitlines()
    assert [line.startswith("# done, skipped: ") for line in marked] == [False, True]
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
    done = _frontier("--root", str(root), "--out", str(tmp_path / "out"), "--seeds", "0", "--only", "baseline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "baseline seed 0: done already, skipped" in done.stdout and "started" not in done.stdout
    assert (run_dir / "summary.json").read_text() == before and not (run_dir / frontier.LOG).exists()
    assert json.loads((tmp_path / "out" / "frontier.json").read_text())["rows"][0]["label"] == "baseline"


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
    assert any("ok seed 0: finished in" in line and "best test acc" in line for line in lines[failed + 1:])
    assert "--lr" in (root / "bad" / "seed0" / frontier.LOG).read_text()  # the run's output is in its log
    result = json.loads((out / "frontier.json").read_text())
    assert [r["label"] for r in result["rows"]] == ["ok"] and [f["label"] for f in result["failed"]] == ["bad"]
    # Resumed: the finished run is kept, the failed one is tried afresh (and fails again, replacing its record).
    second = _frontier(*args, timeout=300)
    assert second.returncode == 1
    assert "ok seed 0: done already, skipped" in second.stdout and "bad seed 0: started" in second.stdout
    assert json.loads((out / "frontier.json").read_text())["failed"][0]["exit_code"] == 2
