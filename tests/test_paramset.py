"""paramset, the one snapshot module: the checked loading and split a training stage uses, and the directory
functions the PS and online MP²'s controller call (is_dataset, clear, pushed_groups)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import models
import paramset

pytestmark = pytest.mark.unit

LAYOUT = models.get("lenet5", 10).layout


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(LAYOUT.total).astype(np.float32)


def write(directory: Path, vectors: list[np.ndarray], dataset: str = "synthetic", shard_size: int = 2,
          **info) -> Path:
    writer = paramset.ParamSetWriter(directory, LAYOUT, dataset, shard_size=shard_size)
    for i, v in enumerate(vectors):
        writer.add(v, **{"step": 10 * (i + 1), "epoch": 1, **info})
    writer.flush()
    return directory


def test_load_returns_every_snapshot_of_every_directory_in_order(tmp_path):
    first = write(tmp_path / "a", [vector(0), vector(1), vector(2)])
    second = write(tmp_path / "b", [vector(3)], dataset="Synthetic")  # another spelling of the same dataset
    snaps = paramset.load([str(first), str(second)], LAYOUT, "synthetic", cross_dataset=False)
    assert len(snaps) == 4
    np.testing.assert_array_equal(snaps.vectors(), np.stack([vector(s) for s in range(4)]))
    assert [r["source"] for r in snaps.records] == [str(first)] * 3 + [str(second)]
    assert paramset.steps_of(snaps) == [10, 20, 30, 10]


def test_load_refuses_what_a_stage_cannot_train_on(tmp_path):
    snaps = str(write(tmp_path / "snaps", [vector(0), vector(1)]))
    with pytest.raises(paramset.ParamSetError, match="nowhere does not exist.*--snapshot-every K"):
        paramset.load([str(tmp_path / "nowhere")], LAYOUT, "synthetic", False)
    (tmp_path / "file").write_text("")
    with pytest.raises(paramset.ParamSetError, match="--holdout-snapshots .*file is not a directory"):
        paramset.load([str(tmp_path / "file")], LAYOUT, "synthetic", False, flag="--holdout-snapshots")
    with pytest.raises(paramset.ParamSetError, match="collected on synthetic, but --dataset is mnist: pass "
                                                     "--dataset synthetic, or --cross-dataset"):
        paramset.load([snaps], LAYOUT, "mnist", False)
    assert len(paramset.load([snaps], LAYOUT, "mnist", cross_dataset=True)) == 2
    with pytest.raises(paramset.ParamSetError, match="holds 2 snapshot; at least 3 are needed"):
        paramset.load([snaps], LAYOUT, "synthetic", False, minimum=3)
    with pytest.raises(paramset.ParamSetError, match="lenet5.*alexnet"):
        paramset.load([snaps], models.get("alexnet", 10).layout, "synthetic", False)


def test_load_names_the_first_snapshot_with_non_finite_values(tmp_path):
    pushed, predicted = LAYOUT.split(vector(1))
    predicted = predicted.copy()
    predicted[5] = np.inf
    diverged = write(tmp_path / "snaps", [vector(0), LAYOUT.join(pushed, predicted), vector(2)], shard_size=8)
    with pytest.raises(paramset.ParamSetError, match=r"1 snapshot\(s\) hold NaN or infinity in the predicted group, "
                                                     r"the first one row 1 of .*shard-00000.npz \(step 20\)"):
        paramset.load([str(diverged)], LAYOUT, "synthetic", False)


def test_steps_of_names_a_snapshot_without_a_step(tmp_path):
    writer = paramset.ParamSetWriter(tmp_path / "snaps", LAYOUT, "synthetic")
    writer.add(vector(0), step=10)
    writer.add(vector(1), epoch=1)  # no step
    writer.flush()
    snaps = paramset.load([str(tmp_path / "snaps")], LAYOUT, "synthetic", False)
    with pytest.raises(paramset.ParamSetError, match=r"1 snapshot\(s\) have no step number, the first one row 1"):
        paramset.steps_of(snaps)


def test_is_dataset_and_clear(tmp_path):
    directory = tmp_path / "snaps"
    assert not paramset.is_dataset(directory)
    paramset.clear(directory)  # nothing there: nothing to do
    assert not directory.exists()
    write(directory, [vector(0), vector(1), vector(2)])
    assert paramset.is_dataset(directory)
    paramset.clear(directory)
    assert directory.is_dir() and not any(directory.iterdir())
    assert not paramset.is_dataset(directory)


def test_pushed_groups_are_the_snapshots_pushed_groups_through_a_resumed_step(tmp_path):
    directory = tmp_path / "snaps"
    assert paramset.pushed_groups(directory, LAYOUT) == []  # no directory yet
    write(directory, [vector(s) for s in range(5)])  # steps 10 ... 50, shards of 2
    writer = paramset.ParamSetWriter(directory, LAYOUT, "synthetic")
    assert writer.keep_through_step(30) == 2  # what a resumed run does first
    groups = paramset.pushed_groups(directory, LAYOUT)
    assert len(groups) == 3
    for s, group in enumerate(groups):
        np.testing.assert_array_equal(group, LAYOUT.split(vector(s))[0])
    assert writer.keep_through_step(0) == 3
    assert paramset.is_dataset(directory) and paramset.pushed_groups(directory, LAYOUT) == []


def test_a_manifest_without_the_keys_readers_use_is_refused_by_name(tmp_path):
    import json

    snaps = write(tmp_path / "snaps", [vector(0), vector(1)])
    manifest = json.loads((snaps / "manifest.json").read_text())
    del manifest["fingerprint"], manifest["shards"]
    (snaps / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(paramset.ParamSetError, match="lacks fingerprint, shards: it is damaged"):
        paramset.load([str(snaps)], LAYOUT, "synthetic", False)
    with pytest.raises(paramset.ParamSetError, match="lacks fingerprint"):
        paramset.ParamSetWriter(snaps, LAYOUT, "synthetic")
