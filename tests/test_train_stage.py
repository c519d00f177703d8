"""mp2_train_stage.py end to end: a tiny parameter dataset of a real LeNet-5 run, the script as a subprocess."""
from __future__ import annotations

import csv
import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import models
import paramset
from paramset import ParamSetWriter
from predictor import Predictor, load_checkpoint, read_meta, save_checkpoint
from predictor.checkpoint import is_trained
from predictor.stage import state, training
from tests.cluster import ENV, ROOT, built_once, check_provenance, interruptible, run_in_one

LENET = models.get("lenet5", 10)
# Small settings: 10 image batches of 50 per snapshot, 500 synthetic test images.
SMALL = ["--model", "lenet5", "--dataset", "synthetic", "--image-batches", "10", "--image-batch", "50"]


def train_stage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "mp2_train_stage.py", *args], cwd=ROOT, env=ENV, text=True,
                          timeout=300, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def train_stages(*runs: list[str], at_once: int = 4,
                 preexec: dict[int, Callable[[], None]] | None = None) -> list[subprocess.CompletedProcess]:
    """Several runs, `at_once` at a time (each is mostly TensorFlow's start-up); `preexec`: run index ->
    its preexec_fn."""
    done = []
    for first in range(0, len(runs), at_once):
        group = runs[first:first + at_once]
        procs = [subprocess.Popen([sys.executable, "mp2_train_stage.py", *a], cwd=ROOT, env=ENV, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  preexec_fn=(preexec or {}).get(first + i))
                 for i, a in enumerate(group)]
        for p, a in zip(procs, group):
            stdout, stderr = p.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(a, p.returncode, stdout, stderr))
    return done


def refusals(*runs: list[str]) -> list[subprocess.CompletedProcess]:
    """Runs that stop with a one-line error before training, all in one process (tests/cluster.py's
    run_in_one: TensorFlow starts once for them all); stdout and stderr apart, as train_stage gives them."""
    return run_in_one("mp2_train_stage.py", *runs, merge=False)


def error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout
    lines = [l for l in done.stderr.splitlines() if l.startswith("mp2_train_stage: error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def resumed(snapshots, tmp_path_factory):
    """1 epoch, then --epochs 2 --resume in the same --out; next to it 2 epochs in one go.

    Returns (out, first run's report, final report, final stdout, the uninterrupted run's report); built once
    in the session (tests/cluster.py's built_once)."""
    def build(base: Path) -> list:
        out, straight = base / "pred", base / "straight"
        common = [*SMALL, "--snapshots", str(snapshots)]
        first, whole = train_stages([*common, "--out", str(out), "--epochs", "1"],
                                    [*common, "--out", str(straight), "--epochs", "2"])
        assert first.returncode == 0, first.stdout + first.stderr
        assert whole.returncode == 0, whole.stdout + whole.stderr
        report1 = json.loads((out / "report.json").read_text())
        second = train_stage(*common, "--out", str(out), "--epochs", "2", "--resume")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "resuming after epoch 1" in second.stdout
        return [str(out), report1, json.loads((out / "report.json").read_text()), second.stdout,
                json.loads((straight / "report.json").read_text())]

    out, *rest = built_once(tmp_path_factory, "train_stage-resumed", build)
    return (Path(out), *rest)


@pytest.mark.cluster
def test_result_loss_learns_and_writes_outputs(resumed):
    out, _, report, stdout, _ = resumed
    rows = report["rows"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    untrained, last = rows[0]["test_assembled_acc"], rows[-1]["test_assembled_acc"]
    assert last > 0.5 and last > untrained + 0.2, rows  # 10 classes: chance is 0.1
    assert rows[-1]["val_assembled_acc"] > rows[0]["val_assembled_acc"] + 0.2, rows
    assert rows[0]["train_loss"] is None and all(np.isfinite(r["train_loss"]) for r in rows[1:])
    for r in rows:
        for part in ("val", "test"):
            assert r[f"{part}_gap"] == pytest.approx(r[f"{part}_own_acc"] - r[f"{part}_assembled_acc"])
            assert len(r[f"{part}_assembled_by_snapshot"]) == len(report["heldout"]) == 2  # 20 % of 10
    # The held-out snapshots' own accuracy, measured by the script on all 500 test images, is
    # what the collecting loop measured on the same images.
    own = np.mean([h["test_acc"] for h in report["heldout"]])
    assert rows[-1]["test_own_acc"] == pytest.approx(own)
    assert report["config"]["val_images"] == 200  # a tenth of the 2,000 synthetic training images
    assert report["loss_images"] == 1800  # the loss draws from the rest only
    # The best epoch is the trained one with the best validation figure (never epoch 0).
    best = max(rows[1:], key=lambda r: r["val_assembled_acc"])
    assert report["best_epoch"] == best["epoch"] and report["selected_on"] == "validation"

    with open(out / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in table] == [0, 1, 2]
    assert float(table[-1]["test_assembled_acc"]) == pytest.approx(last)
    assert float(table[-1]["val_assembled_acc"]) == pytest.approx(rows[-1]["val_assembled_acc"])

    weights, meta = load_checkpoint(str(out / "predictor.npz"), LENET.layout)
    assert meta["trained_epochs"] == best["epoch"] and meta["selected_on"] == "validation"
    assert meta["loss"] == "result" and meta["dataset"] == "synthetic" and meta["val_images"] == 200
    for key in ("val_assembled_acc", "val_own_acc", "test_assembled_acc", "test_own_acc"):
        assert meta[key] == pytest.approx(best[key]), key
    assert is_trained(meta)
    assert f"best epoch {best['epoch']}" in stdout.splitlines()[-1]
    assert str(out / "predictor.npz") in stdout.splitlines()[-1]
    check_provenance(report["provenance"])
    assert report["provenance"]["argv"][0] == "mp2_train_stage.py" and "--resume" in report["provenance"]["argv"]


@pytest.mark.cluster
def test_heldout_snapshots_are_the_end_of_the_trajectory(resumed):
    report = resumed[2]
    # 10 snapshots at steps 20, 40, ..., 200: the held-out 20 % are the last two.
    assert sorted(h["step"] for h in report["heldout"]) == [180, 200]
    assert report["train_snapshots"] == 8


@pytest.mark.cluster
def test_resume_continues_the_first_run(resumed):
    _, report1, report, _, straight = resumed
    assert [r["epoch"] for r in report1["rows"]] == [0, 1]
    assert report["rows"][:2] == report1["rows"]  # kept as they were, not run again
    assert report["resumed_from_epoch"] == 1
    # Weights, optimizer state and the random streams carry over: the resumed epoch 2 is the
    # uninterrupted run's epoch 2.
    for key in ("train_loss", "val_assembled_acc", "test_assembled_acc", "test_own_acc"):
        assert report["rows"][2][key] == pytest.approx(straight["rows"][2][key], rel=1e-5), key


@pytest.mark.cluster
def test_resume_refuses_other_settings(snapshots, resumed):
    out = resumed[0]
    done = train_stage(*SMALL, "--snapshots", str(snapshots), "--out", str(out), "--epochs", "3",
                       "--resume", "--lr", "0.01")
    line = error_line(done)
    assert "--lr was 0.001, now 0.01" in line


@pytest.mark.cluster
def test_mse_loss_and_snapshot_batches(snapshots, tmp_path):
    out = tmp_path / "mse"
    done = train_stage(*SMALL, "--snapshots", str(snapshots), "--out", str(out), "--epochs", "1",
                       "--loss", "mse", "--snapshot-batch", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert [r["epoch"] for r in report["rows"]] == [0, 1]
    assert report["steps_per_epoch"] == 3 * 10  # 8 training snapshots in batches of 3, 10 steps each
    assert load_checkpoint(str(out / "predictor.npz"), LENET.layout)[1]["loss"] == "mse"


@pytest.mark.cluster
def test_errors(snapshots, tmp_path):
    alexnet = models.get("alexnet", 10)
    other = tmp_path / "alexnet"
    writer = ParamSetWriter(other, alexnet.layout, "synthetic")
    for seed in (0, 1):
        writer.add(alexnet.init_vector(seed), step=seed, epoch=0, test_acc=0.1)
    writer.flush()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in snapshots.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    shard = damaged / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])

    relabelled = tmp_path / "relabelled"  # the same snapshots, said to come from Fashion-MNIST
    relabelled.mkdir()
    for f in snapshots.iterdir():
        (relabelled / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((relabelled / "manifest.json").read_text())
    (relabelled / "manifest.json").write_text(json.dumps({**manifest, "dataset": "fashion_mnist"}))

    empty = tmp_path / "empty"
    empty.mkdir()
    out = ["--out", str(tmp_path / "out")]
    model_clash, truncated, nothing, missing, dataset_clash = refusals(
        [*SMALL, "--snapshots", str(other), *out],
        [*SMALL, "--snapshots", str(damaged), *out],
        [*SMALL, "--snapshots", str(empty), *out],
        [*SMALL, "--snapshots", str(tmp_path / "nowhere"), *out],
        [*SMALL, "--snapshots", str(relabelled), *out],
    )
    line = error_line(model_clash)
    assert "alexnet" in line and "lenet5" in line
    assert str(shard) in error_line(truncated)
    assert str(empty) in error_line(nothing) and "manifest.json" in error_line(nothing)
    assert "does not exist" in error_line(missing)
    line = error_line(dataset_clash)
    assert "synthetic" in line and "fashion_mnist" in line and "--cross-dataset" in line


# --- the split of the snapshots and of the images ----------------------------------------------------
@pytest.mark.unit
def test_split_holds_out_the_last_steps_contiguously():
    rng = np.random.default_rng(3)
    steps = [int(s) for s in rng.permutation(np.arange(1, 51) * 10)]  # 50 snapshots, out of order
    parts = paramset.split(steps, 0.2)
    held, kept = [steps[i] for i in parts.heldout], [steps[i] for i in parts.train]
    assert len(held) == 10 and len(kept) == 40
    assert min(held) > max(kept)
    assert sorted(np.concatenate([parts.train, parts.heldout]).tolist()) == list(range(50))
    assert len(paramset.split(steps[:3], 0.01).heldout) == 1  # at least one when holdout > 0
    assert len(paramset.split(steps, 0.0).heldout) == 0
    assert len(paramset.split(steps[:2], 0.9).train) == 1  # at least one left to train


@pytest.mark.unit
def test_validation_images_are_fixed_and_kept_out_of_the_loss():
    loss_idx, val_idx = training.split_images(1000, 100)
    assert len(val_idx) == 100 and len(loss_idx) == 900
    assert sorted(np.concatenate([loss_idx, val_idx]).tolist()) == list(range(1000))
    again = training.split_images(1000, 100)
    np.testing.assert_array_equal(again[1], val_idx)  # the same images every run, whatever --seed
    assert not np.array_equal(val_idx, np.arange(900, 1000))  # a permutation, not the file's tail
    stream = training.ImageStream(loss_idx, 64, np.random.default_rng(0))
    drawn = np.concatenate([stream.next() for _ in range(40)])  # several passes over the pool
    assert set(drawn.tolist()) == set(loss_idx.tolist())
    with pytest.raises(ValueError, match="--val-images"):
        training.split_images(1000, 1000)


@pytest.mark.unit
def test_the_best_epoch_is_chosen_on_validation_images():
    def row(epoch, val, test):
        return {"epoch": epoch, "val_assembled_acc": val, "test_assembled_acc": test}

    assert not state.improves(row(0, 0.9, 0.9), None)  # the untrained control is never kept
    assert state.improves(row(1, 0.2, 0.1), None)
    best = row(1, 0.5, 0.9)
    assert state.improves(row(2, 0.6, 0.1), best)  # better on validation, worse on test: kept
    assert not state.improves(row(2, 0.4, 0.99), best)  # better on test only: not kept
    assert not state.improves(row(2, 0.5, 0.99), best)  # a tie keeps the earlier epoch


@pytest.mark.unit
def test_is_trained():
    assert is_trained({"trained_epochs": 1}) and is_trained({"trained_epochs": 6})
    for meta in ({}, {"trained_epochs": 0}, {"trained_epochs": "3"}, {"trained_epochs": True},
                 {"trained_epochs": None}):
        assert not is_trained(meta), meta


def copy_snapshots(source: Path, target: Path, rows: list[int]) -> None:
    """A parameter dataset of some of `source`'s snapshots (standing in for another run)."""
    snaps = paramset.load([str(source)], LENET.layout, "synthetic", False)
    writer = ParamSetWriter(target, LENET.layout, "synthetic")
    for i in rows:
        r = snaps.records[i]
        writer.add(snaps.vectors([i])[0], step=r["step"], epoch=r["epoch"], test_acc=r["test_acc"])
    writer.flush()


@pytest.mark.cluster
def test_holdout_snapshots_from_another_run(snapshots, tmp_path):
    other = tmp_path / "other-run"
    copy_snapshots(snapshots, other, [3, 6])
    out = tmp_path / "out"
    done = train_stage(*SMALL, "--snapshots", str(snapshots), "--holdout-snapshots", str(other), "--out", str(out),
                       "--epochs", "1")
    both, same = refusals(
        [*SMALL, "--snapshots", str(snapshots), "--holdout-snapshots", str(other), "--holdout", "0.3",
         "--out", str(tmp_path / "x")],
        [*SMALL, "--snapshots", str(snapshots), "--holdout-snapshots", str(snapshots), "--out", str(tmp_path / "y")],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["train_snapshots"] == 10  # every --snapshots snapshot trains
    assert report["steps_per_epoch"] == 10 * 10
    assert [h["source"] for h in report["heldout"]] == [str(other)] * 2
    assert [h["step"] for h in report["heldout"]] == [80, 140]
    assert report["config"]["holdout_snapshots"] == [str(other.resolve())]
    assert "--holdout-snapshots" in error_line(both) and "--holdout" in error_line(both)
    assert "in both --snapshots and --holdout-snapshots" in error_line(same)


# --- predictor.npz: only ever a trained one ----------------------------------------------------------
def old_predictor(path: Path, layout: models.Layout = LENET.layout) -> bytes:
    """A checkpoint standing for one a previous training left in --out; its bytes."""
    save_checkpoint(str(path), layout, Predictor(layout, seed=7).numpy_weights(),
                    {"trained_epochs": 3, "marker": "old"})
    return path.read_bytes()


@pytest.mark.cluster
def test_no_predictor_before_a_trained_epoch(snapshots, tmp_path):
    evaluate_only, interrupted = tmp_path / "evaluate-only", tmp_path / "interrupted"
    (evaluate_only / "kept").mkdir(parents=True)
    interrupted.mkdir()
    old_bytes = old_predictor(interrupted / "predictor.npz")
    common = [*SMALL, "--snapshots", str(snapshots)]

    # Interrupted in the middle of epoch 1: the old predictor is still there, untouched.
    proc = subprocess.Popen([sys.executable, "mp2_train_stage.py", *common, "--image-batches", "40",
                             "--out", str(interrupted), "--epochs", "1", "--fresh"], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=interruptible)
    seen = []
    for line in proc.stdout:  # the first progress line of epoch 1: 3/4 of the epoch (240 steps) still to go
        seen.append(line)
        if line.startswith("epoch 1/1 step"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(seen) + rest
    assert (interrupted / "predictor.npz").read_bytes() == old_bytes  # set aside by --fresh, put back
    assert sorted(p.name for p in interrupted.iterdir()) == ["predictor.npz"]

    only = train_stage(*common, "--out", str(evaluate_only), "--epochs", "0")
    # --epochs 0: the report of the untrained predictor, and no predictor.npz or state.
    assert only.returncode == 0, only.stdout + only.stderr
    assert sorted(p.name for p in evaluate_only.iterdir()) == ["kept", "report.csv", "report.json"]
    report = json.loads((evaluate_only / "report.json").read_text())
    assert [r["epoch"] for r in report["rows"]] == [0] and report["best"] is None and report["checkpoint"] is None
    assert "no predictor written" in only.stdout
    # With --fresh, a finished epoch replaces the old predictor with the trained one: the guarded "fresh" run
    # (test_fresh_keeps_the_previous_training_aside).


# --- an --out that holds a predictor, an --out that cannot be used, a write that fails -----------------
def old_training(out: Path) -> dict[str, bytes]:
    """--out as a finished training left it (a predictor and the report describing it): its files' bytes."""
    out.mkdir(parents=True)
    old_predictor(out / "predictor.npz")
    (out / "report.json").write_text('{"marker": "old"}\n')
    (out / "report.csv").write_text("epoch\nold\n")
    return files_of(out)


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def disk_fills_at_1_mb() -> None:
    """preexec_fn: a file may grow to 1 MB (report.json fits, LeNet-5's predictor.npz of 11 MB does not);
    a write past that fails with EFBIG instead of killing the process: a full disk, for this process only."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 20, 2 ** 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.fixture(scope="module")
def guarded(snapshots, tmp_path_factory) -> dict:
    """Runs into an --out holding a trained predictor, and into --outs that cannot be used, started together.
    Returns name -> (the run, its --out, the --out's files before the run); built once in the session
    (tests/cluster.py's built_once), a copy of each --out as it was kept in before/."""
    def build(base: Path) -> dict:
        return {n: {"run": [d.args, d.returncode, d.stdout, d.stderr], "out": str(out), "before": before and str(before)}
                for n, (d, out, before) in run_guarded(base, [*SMALL, "--snapshots", str(snapshots)]).items()}

    built = built_once(tmp_path_factory, "train_stage-guarded", build)
    return {n: (subprocess.CompletedProcess(*v["run"]), Path(v["out"]), v["before"] and files_of(Path(v["before"])))
            for n, v in built.items()}


def run_guarded(base: Path, common: list[str]) -> dict:
    """name -> (the run, its --out, a copy of the --out as it was before the run, if it held anything)."""
    (base / "a-file").write_text("not a directory")
    (base / "notes.txt").write_text("a text file, not a predictor\n")
    outs = {"refused": base / "refused", "evaluate": base / "evaluate", "fresh": base / "fresh",
            "full-disk": base / "full-disk", "proc": Path("/proc/x"), "a-file": base / "a-file",
            "text-init": base / "text-init"}
    before = {}
    for name in ("refused", "evaluate", "fresh", "full-disk"):
        old_training(outs[name])
        before[name] = shutil.copytree(outs[name], base / "before" / name)
    runs = {
        "refused": ["--epochs", "1"],
        "evaluate": ["--epochs", "0"],
        "fresh": ["--epochs", "1", "--fresh"],
        "full-disk": ["--epochs", "1", "--fresh"],
        "proc": ["--epochs", "1"],
        "a-file": ["--epochs", "1"],
        "text-init": ["--epochs", "0", "--init", str(base / "notes.txt")],
    }
    trains = ["fresh", "full-disk"]  # these train an epoch; the others stop at once, all in one process
    refused = [n for n in runs if n not in trains]
    done = dict(zip(trains, train_stages(*[[*common, "--out", str(outs[n]), *runs[n]] for n in trains],
                                         preexec={trains.index("full-disk"): disk_fills_at_1_mb})))
    done.update(zip(refused, refusals(*[[*common, "--out", str(outs[n]), *runs[n]] for n in refused])))
    return {n: (done[n], outs[n], before.get(n)) for n in runs}


@pytest.mark.cluster
def test_a_fresh_run_never_replaces_a_predictor(guarded):
    done, out, before = guarded["refused"]
    line = error_line(done)
    assert line.startswith(f"mp2_train_stage: error: --out {out} already holds a trained predictor (predictor.npz"), line
    assert "--resume continues" in line and f"--fresh keeps it aside (in {out}/replaced-<time>/) and trains a new one" in line and "another --out" in line
    assert files_of(out) == before


@pytest.mark.cluster
def test_evaluating_never_rewrites_the_report_beside_a_predictor(guarded):
    done, out, before = guarded["evaluate"]
    line = error_line(done)
    assert f"--epochs 0 only evaluates, and its report would replace {out / 'report.json'}" in line, line
    assert f"another --out (with --init {out}" in line
    assert files_of(out) == before


@pytest.mark.cluster
def test_fresh_keeps_the_previous_training_aside(guarded):
    done, out, before = guarded["fresh"]
    assert done.returncode == 0, done.stdout + done.stderr
    [aside] = out.glob("replaced-*")
    assert f"--fresh: the previous training's files are now in {aside}" in done.stdout
    assert files_of(aside) == before
    # A finished epoch replaced the old predictor with the trained one.
    meta = read_meta(str(out / "predictor.npz"))
    assert meta["trained_epochs"] == 1 and "marker" not in meta and meta["selected_on"] == "validation"
    report = json.loads((out / "report.json").read_text())
    assert report["best_epoch"] == 1
    assert meta["val_assembled_acc"] == pytest.approx(report["rows"][1]["val_assembled_acc"])


@pytest.mark.cluster
def test_a_write_that_fails_is_one_line_and_keeps_the_old_predictor(guarded):
    done, out, before = guarded["full-disk"]
    line = error_line(done)
    assert line.startswith(f"mp2_train_stage: error: cannot write {out / 'predictor.npz'} (File too large): "
                           f"free some space or choose another --out"), line
    assert f"the previous training's files are back in {out} from replaced-" in line, line
    assert "Traceback" not in done.stderr
    assert files_of(out) == before  # nothing set aside is left, no temporary file


@pytest.mark.cluster
def test_an_out_that_cannot_be_used_is_one_line(guarded):
    proc, a_file = guarded["proc"][0], guarded["a-file"][0]
    assert error_line(proc) == ("mp2_train_stage: error: cannot create --out /proc/x (No such file or directory): "
                                "choose a directory you can write")
    assert error_line(a_file) == (f"mp2_train_stage: error: --out {guarded['a-file'][1]} is a file, not a "
                                  f"directory: choose another --out")
    assert "Traceback" not in proc.stderr + a_file.stderr


@pytest.mark.cluster
def test_a_text_file_given_as_init_is_not_an_npz(guarded):
    done = guarded["text-init"][0]
    line = error_line(done)
    assert "notes.txt is not an .npz file (its first bytes look like text: 'a text file, not" in line, line
    assert "pickle" not in done.stderr


# --- flags ------------------------------------------------------------------------------------------
@pytest.mark.cluster
def test_flag_ranges(snapshots, tmp_path):
    # One case per kind of range check: flags of one kind share their argtypes type.
    common = [*SMALL, "--snapshots", str(snapshots), "--out", str(tmp_path / "out")]
    cases = {
        ("--epochs", "-1"): "argument --epochs: must be at least 0, got -1",
        ("--image-batches", "0"): "argument --image-batches: must be at least 1, got 0",
        ("--image-batch", "x"): "argument --image-batch: expected a whole number, got 'x'",
        ("--lr", "0"): "argument --lr: must be in (0, inf), got 0",
        ("--mixup", "-0.5"): "argument --mixup: must be in [0, inf), got -0.5",
        ("--holdout", "1"): "argument --holdout: must be in [0, 1), got 1",
        ("--holdout", "0"): "--holdout 0 holds nothing out",
        ("--val-images", "2000"): "--val-images must be between 1 and 1999",
        ("--val-images", "1990"): "--image-batch 50 is larger than the images the loss may use (10",
        ("--threads", "nan"): "argument --threads: expected a whole number, got 'nan'",
    }
    done = refusals(*[[*common, *flag] for flag in cases])
    for (flag, expected), result in zip(cases.items(), done):
        assert expected in error_line(result), (flag, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "predictor.npz").exists()
