"""Stage 1 (collection on the PS), the whole pipeline on synthetic data, and the comparison."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import models
import paramset
from predictor import read_meta
from reports import accuracy, cost
from reports.compare import compare, write_comparison
from runtime.methods import METHODS
from predictor.stage.flags import mismatches
from tests.cluster import launcher_env, ROOT, SMALL, check_provenance, cluster_flags, correction_entries, run, start
from tests.test_train_stage import SMALL as STAGE_SMALL
from tests.test_train_stage import old_predictor

LENET = models.get("lenet5", 10)


@pytest.mark.cluster
def test_collection_writes_a_readable_parameter_dataset(tmp_path):
    out = tmp_path / "run"
    # Seed 2 makes the collector's random step of the last window the run's last step (40).
    done = run("mp2_local.py", "--workers", "2", "--epochs", "2", "--snapshot-every", "5", "--out", str(out), *SMALL,
               "--seed", "2")
    assert done.returncode == 0, done.stdout
    snaps = paramset.read([out / "snapshots"], LENET.layout)
    manifest = json.loads((out / "snapshots" / "manifest.json").read_text())
    assert manifest["model"] == "lenet5" and manifest["fingerprint"] == LENET.layout.fingerprint()
    assert manifest["dataset"] == "synthetic"
    # 20 steps per epoch, one snapshot at a random step of every 5: 4 per epoch.
    assert len(snaps) == 8
    steps = [r["step"] for r in snaps.records]
    assert [(s - 1) // 5 for s in steps] == list(range(8)), steps
    assert [r["epoch"] for r in snaps.records] == [1] * 4 + [2] * 4
    assert all(0 <= r["test_acc"] <= 1 for r in snaps.records)
    assert snaps.pushed.shape == (8, LENET.layout.pushed)
    assert snaps.predicted.shape == (8, LENET.layout.predicted)
    assert len({v.tobytes() for v in snaps.pushed}) == 8  # snapshots of a model that moved
    # A fresh run never mixes its snapshots into an earlier run's.
    again = run("mp2_ps.py", *cluster_flags(2), "--snapshot-every", "5", "--out", str(out), *SMALL, timeout=120)
    assert again.returncode != 0 and "holds a finished run" in again.stdout and "--fresh" in again.stdout, again.stdout
    assert len(paramset.read([out / "snapshots"], LENET.layout)) == 8
    # The last snapshot, taken at the last step, equals the final global model.
    final, _ = _load_model(out / "checkpoint.npz")
    assert steps[-1] == 40, steps
    np.testing.assert_array_equal(snaps.vectors([-1])[0], final)


@pytest.mark.cluster
def test_a_killed_collection_leaves_what_it_wrote_readable(tmp_path):
    flags = cluster_flags(1)
    common = [*flags, "--epochs", "50", "--out", str(tmp_path), *SMALL]
    ps = start("mp2_ps.py", *common, "--snapshot-every", "3")
    worker = start("mp2_worker.py", *common, "--task_index", "0")
    try:
        manifest = tmp_path / "snapshots" / "manifest.json"
        end = time.monotonic() + 120
        while not (manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 2):
            assert time.monotonic() < end and ps.poll() is None, "no shards were written"
            time.sleep(0.3)
        ps.send_signal(signal.SIGKILL)
    finally:
        for p in (ps, worker):
            p.kill()
            p.wait()
    snaps = paramset.read([tmp_path / "snapshots"], LENET.layout)
    assert len(snaps) >= 8 and np.isfinite(snaps.pushed).all()


@pytest.mark.unit
def test_parameter_dataset_of_another_model_is_refused(tmp_path):
    writer = paramset.ParamSetWriter(tmp_path, LENET.layout, "synthetic")
    writer.add(LENET.init_vector(0), step=1, epoch=1, test_acc=0.1)
    writer.flush()
    with pytest.raises(paramset.ParamSetError, match="lenet5.*resnet18"):
        paramset.read([tmp_path], models.get("resnet18", 10).layout)


@pytest.mark.cluster
def test_pipeline_end_to_end_on_synthetic_data(tmp_path):
    out = tmp_path / "pipe"
    # Run from tmp_path: the pipeline trains its predictor under the caller's predictors/ (never the
    # repository's, which other tests running beside this one list as unchanged).
    trained = tmp_path / "predictors" / "lenet5-synthetic-push-front_head"
    # --retrain over an existing predictor: the stage is told to replace it, and keeps it aside.
    existing = trained / "predictor.npz"
    existing.parent.mkdir(parents=True)
    old_predictor(existing, models.get("lenet5", 10, push="front+head").layout)
    before = existing.read_bytes()
    # The data flags and --push must reach the PS, the workers and the predictor training alike;
    # --fit-input carries no value, so a flag after it must not be swallowed as its value. One worker per
    # cluster: what is checked does not depend on their number.
    done = run(
        "mp2_pipeline.py", "--workers", "1", "--dataset", "synthetic", "--epochs", "2", "--snapshot-every", "4",
        "--stage-epochs", "1", "--stage-flags", "--image-batches 3 --eval-images 200", "--out", str(out),
        "--fit-input", "--train-images", "1000", "--push", "front+head", "--worker-batch", "50", "--retrain",
        timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads((out / "comparison.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    # A tree without local SGD still runs the pipeline and says what the table lacks.
    if "localsgd" in METHODS:
        assert set(rows) == {"baseline", "mp2", "localsgd"}
        assert rows["localsgd"]["steps"] == rows["baseline"]["steps"]
    else:
        assert set(rows) == {"baseline", "mp2"}
        assert "note: no local SGD row: this tree's mp2_ps.py has no --method localsgd" in done.stdout
        assert any(n.startswith("no local SGD row") for n in result["notes"])
    # The whole cost: MP²'s route is the collection run (the baseline run) + predictor training + the MP² run.
    routes = {r["route"]: r for r in result["whole_cost"]}
    assert list(routes)[0] == "baseline alone" and list(routes)[-1] == "MP² (whole pipeline)"
    assert ("local SGD (H=16) alone" in routes) == ("localsgd" in METHODS)
    both_ways = {m: r["bytes_pushed_total"] + r["bytes_pulled_total"] for m, r in rows.items()}
    whole = routes["MP² (whole pipeline)"]
    assert whole["complete"] and whole["bytes"] == both_ways["baseline"] + both_ways["mp2"]
    training = next(p for p in whole["parts"] if p["part"] == "predictor training")
    assert training["wall_seconds"] > 0 and training["bytes"] == 0
    assert whole["wall_seconds"] == pytest.approx(rows["baseline"]["wall_seconds"] + training["wall_seconds"]
                                                  + rows["mp2"]["wall_seconds"])
    assert routes["baseline alone"]["bytes"] == both_ways["baseline"]
    front_head = models.get("lenet5", 10, push="front+head").layout
    # Every MP² step pushes the pushed group and the correction's Top-k (value and position) of the rest.
    ratio = json.loads((out / "mp2" / "summary.json").read_text())["method_options"]["correction_ratio"]
    pushed = 4 * front_head.pushed + 8 * correction_entries(front_head, ratio)
    assert ratio > 0 and rows["mp2"]["pushed_vs_baseline"] == pytest.approx(pushed / (4 * front_head.total))
    assert rows["mp2"]["pushed_layers"] == front_head.pushed_layers()
    assert rows["mp2"]["bytes_pulled_total"] == rows["baseline"]["bytes_pulled_total"]
    assert result["same_data"] and all(r["data"]["train_images"] == 1000 for r in rows.values())
    assert rows["mp2"]["steps"] == 2 * 1000 // 50  # 2 epochs of 1000 images, 50 a step
    # The predictor was trained on the same subset and pushed group, and is the one MP² used.
    meta = read_meta(str(existing))
    assert (meta["push"], meta["train_images"], meta["fit_input"]) == ("front+head", 1000, True)
    assert before in [(aside / "predictor.npz").read_bytes() for aside in existing.parent.glob("replaced-*")]
    assert rows["mp2"]["predictor"].endswith("lenet5-synthetic-push-front_head/predictor.npz")
    assert f"{meta['test_assembled_acc']:.4f} test accuracy" in result["notes"][0]
    assert "chosen on validation" in result["notes"][0]
    table = (out / "comparison.md").read_text()
    assert "| baseline |" in table and "| mp2 |" in table
    assert rows["mp2"]["test_acc_kind"] == "at best val"  # the runs hold out a validation split
    assert "## Whole cost" in table and f"| MP² (whole pipeline) | {rows['mp2']['test_acc']:.4f} | " in table
    assert "[0:0" in done.stdout  # the stages' lines carry the pipeline's elapsed time
    check_provenance(result["provenance"])
    assert result["provenance"]["argv"][0] == "mp2_pipeline.py"
    summary = json.loads((out / "mp2" / "summary.json").read_text())
    check_provenance(summary["provenance"])
    assert summary["provenance"]["argv"][:1] == ["mp2_ps.py"]  # the launcher gave the PS its absolute path


@pytest.mark.unit
def test_comparison_ratios():
    # The gap is of the test accuracies at the best validation epochs, not of the best test epochs (a 5-point gap).
    base = {"method": "baseline", "model": "m", "dataset": "d", "workers": 2, "epochs": 1, "steps": 10,
            "best_test_acc": 0.85, "test_acc_at_best_val": 0.8, "final_test_acc": 0.8, "test_acc_by_epoch": [0.8],
            "bytes_pushed_total": 1000, "bytes_pulled_total": 1000, "wall_seconds": 10.0}
    mp2 = {**base, "method": "mp2", "best_test_acc": 0.9, "test_acc_at_best_val": 0.79, "bytes_pushed_total": 50,
           "wall_seconds": 8.0}
    rows = {r["method"]: r for r in compare({"baseline": base, "mp2": mp2})["rows"]}
    assert rows["mp2"]["pushed_vs_baseline"] == pytest.approx(0.05)
    assert rows["mp2"]["traffic_vs_baseline"] == pytest.approx(1050 / 2000)
    assert rows["mp2"]["accuracy_gap_vs_baseline"] == pytest.approx(-0.01)
    assert rows["mp2"]["bytes_pushed_per_step"] == pytest.approx(50 / 20)


@pytest.mark.unit
def test_comparison_shows_the_test_accuracy_at_the_best_validation_epoch_else_the_final_one(tmp_path):
    common = {"model": "m", "dataset": "d", "workers": 2, "epochs": 4, "steps": 40, "bytes_pushed_total": 1000,
              "bytes_pulled_total": 1000, "wall_seconds": 10.0}
    # Best test epoch 2 (0.86), best validation epoch 3 (test 0.83), final 0.81.
    mp2 = {**common, "method": "mp2", "test_acc_by_epoch": [0.70, 0.86, 0.83, 0.81], "val_acc_by_epoch": [0.7, 0.8, 0.84, 0.82],
           "best_test_acc": 0.86, "best_val_epoch": 3, "test_acc_at_best_val": 0.83, "final_test_acc": 0.81}
    # A record made before the validation split: its final epoch, marked.
    base = {**common, "method": "baseline", "test_acc_by_epoch": [0.80, 0.90, 0.88, 0.85], "best_test_acc": 0.9,
            "final_test_acc": 0.85}
    result = write_comparison(tmp_path, {"baseline": base, "mp2": mp2})
    rows = {r["method"]: r for r in result["rows"]}
    assert (rows["mp2"]["test_acc"], rows["mp2"]["test_acc_kind"], rows["mp2"]["best_val_epoch"]) == (0.83, "at best val", 3)
    assert rows["mp2"]["accuracy_gap_vs_baseline"] == pytest.approx(0.83 - 0.85)
    table = (tmp_path / "comparison.md").read_text()
    assert f"| method | {accuracy.HEADER} | final test acc |" in table
    assert "| mp2 | 0.8300 | 0.8100 |" in table and "| baseline | 0.8500† | 0.8500 |" in table
    assert accuracy.FOOTNOTE in table and "0.8600" not in table and "0.9000" not in table


@pytest.mark.unit
def test_comparison_reads_the_predictor_and_flags_different_data():
    base = {"method": "baseline", "model": "m", "dataset": "d", "workers": 2, "epochs": 1, "steps": 10,
            "best_test_acc": 0.8, "final_test_acc": 0.8, "test_acc_by_epoch": [0.8], "bytes_pushed_total": 1000,
            "bytes_pulled_total": 1000, "wall_seconds": 10.0, "data": {"train_images": 1000}}
    mp2 = {**base, "method": "mp2", "ps_inputs": {"predictor": "/p/predictor.npz", "predictor_sha256": "ab"},
           "method_options": {"predictor": "p"}}
    result = compare({"baseline": base, "mp2": mp2})
    assert result["same_data"]
    assert {r["method"]: r["predictor"] for r in result["rows"]} == {"baseline": None, "mp2": "/p/predictor.npz"}
    assert not compare({"baseline": base, "mp2": {**mp2, "data": {"train_images": 2000}}})["same_data"]


@pytest.mark.unit
def test_whole_cost_routes_count_every_part_and_mark_a_reused_predictor():
    base = {"best_test_acc": 0.9, "test_acc_at_best_val": 0.8, "final_test_acc": 0.8, "bytes_pushed_total": 1000,
            "bytes_pulled_total": 1000, "wall_seconds": 10.0}
    mp2 = {**base, "best_test_acc": 0.95, "test_acc_at_best_val": 0.79, "bytes_pushed_total": 50, "wall_seconds": 8.0}
    # Made before the validation split: its final test accuracy, marked.
    local = {"best_test_acc": 0.9, "final_test_acc": 0.78, "bytes_pushed_total": 100, "bytes_pulled_total": 100,
             "wall_seconds": 9.0}
    summaries = {"baseline": base, "mp2": mp2, "localsgd": local}
    routes = {r["route"]: r for r in cost.pipeline_routes(summaries, 30.0, True, "local SGD (H=16)")}
    assert list(routes) == ["baseline alone", "local SGD (H=16) alone", "MP² (whole pipeline)"]
    assert routes["local SGD (H=16) alone"]["bytes"] == 200
    assert (routes["MP² (whole pipeline)"]["bytes"], routes["MP² (whole pipeline)"]["wall_seconds"]) == (3050, 48.0)
    table = cost.markdown(list(routes.values()))
    assert "| MP² (whole pipeline) | 0.7900 | 0.0 | 152.50% | 48.0 | 480.00% |" in table
    assert "| local SGD (H=16) alone | 0.7800† | 0.0 |" in table and accuracy.FOOTNOTE in table
    # A reused predictor: its collection run was not measured here, so MP²'s cost is a lower bound, said so.
    reused = cost.pipeline_routes({"baseline": base, "mp2": mp2}, None, False)[-1]
    assert not reused["complete"] and (reused["bytes"], reused["wall_seconds"]) == (1050, 8.0)
    assert "| MP² (whole pipeline) | 0.7900 | ≥ 0.0 | ≥ 52.50% | ≥ 8.0 |" in cost.markdown([routes["baseline alone"], reused])
    assert cost.predictor_training_seconds({"rows": [{"seconds": 1.5}, {"seconds": 2.0}]}) == 3.5


def _load_model(path):
    from helpers import npzio

    arrays, meta = npzio.read(path)
    return arrays["model"], meta


@pytest.mark.cluster
def test_pipeline_reuses_a_predictor_only_if_trained_as_this_run_would(one_epoch_predictor, tmp_path):
    # A predictor where the pipeline run from tmp_path looks: predictors/lenet5-synthetic. It is one the stage
    # trained one epoch with STAGE_SMALL (tests/conftest.py's one_epoch_predictor), copied there.
    trained = tmp_path / "predictors" / "lenet5-synthetic"
    stage_flags = STAGE_SMALL[4:]  # --image-batches 10 --image-batch 50
    shutil.copytree(one_epoch_predictor, trained)
    config = json.loads((trained / "report.json").read_text())["config"]
    # The same settings (snapshots aside: the pipeline collects its own) match; others are named.
    same = ["--snapshots", "x", "--dataset", "synthetic", "--epochs", "1", *stage_flags]
    assert mismatches(config, same) == []
    assert mismatches(config, [*same, "--loss", "mse", "--train-images", "500"]) == [
        ("--train-images", None, 500), ("--loss", "result", "mse")]

    done = subprocess.run(
        [sys.executable, str(ROOT / "mp2_pipeline.py"), "--workers", "1", "--epochs", "1", "--dataset", "synthetic",
         "--preset", "paper",  # the front layers pushed, as the predictor above was trained for
         "--out", "pipe", "--stage-epochs", "2", "--stage-flags", " ".join([*stage_flags, "--loss", "mse"])],
        cwd=tmp_path, env=launcher_env(), text=True, timeout=120, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert done.returncode == 1, done.stdout[-3000:]
    path = trained / "predictor.npz"
    assert done.stdout.strip().splitlines()[-1] == (
        f"mp2_pipeline: error: {path} was trained with other settings than this run's: --stage-epochs 1 "
        f"(this run: 2); --loss (in --stage-flags) result (this run: mse). Give the flags it was trained with, "
        f"run with --retrain to train one for this run (the old one is kept in {trained}/replaced-<time>/), or pass "
        f"--predictor {path} to use it as it is")
    assert not (tmp_path / "pipe" / "baseline").exists()  # refused before any stage ran


@pytest.mark.cluster
def test_the_readmes_first_command_reaches_the_pipeline():
    """`bash scripts/run.sh` (README's first command) sets up, then hands its flags to mp2_pipeline.py.
    Once it passed setup.sh an argument setup.sh refuses, and the main job never started."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "run.sh"), "--help"], cwd=ROOT, env=launcher_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0 and "usage: mp2_pipeline" in done.stdout, done.stdout[-2000:]
