"""A model of one's own (`--model path/to/file.py:FUNCTION`): the worked example of docs/examples, copied
outside the repository, trains with local SGD on a local cluster (--verify-sync), its snapshots train a
predictor through the stage, and MP² trains with that predictor (--verify-sync); each bad model file is one line."""
from __future__ import annotations

import shutil

import pytest

import models
from tests.cluster import ROOT, run

EXAMPLE = ROOT / "docs" / "examples" / "small_cnn.py"


@pytest.mark.unit
def test_the_worked_example_builds_from_its_file(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "small_cnn.py")
    model = models.get(f"{tmp_path / 'small_cnn.py'}:small_cnn", 10, push="front")
    assert model.name == "small_cnn" and model.input_shape == (28, 28, 1)
    assert model.layout.total == 3 * 3 * 8 + 8 + 3 * 3 * 8 * 16 + 16 + 784 * 64 + 64 + 64 * 10 + 10
    assert model.layout.pushed_layers() == ["conv1", "conv2"]
    assert models.get(f"{tmp_path / 'small_cnn.py'}:small_cnn", 3).layout.classes == 3


BAD = {
    "missing function": ("x = 1\n", "has no function 'build'"),
    "not a model": ("def build(classes):\n    return [classes]\n", "returned list, not a models.Model"),
    "raises": ("def build(classes):\n    raise RuntimeError('boom')\n", "build(10) raised RuntimeError: boom"),
    "broken file": ("def build(classes) oops\n", "failed to load: SyntaxError"),
    "unpredictable layer": (
        "from models import Model, ParamSpec\nfrom models.layout import Layout\n"
        "def build(classes):\n"
        "    params = (ParamSpec('rnn/w', (4, classes), 'pushed', 'rnn', 'lstm'), ParamSpec('rnn/b', (classes,), 'pushed', 'rnn', 'lstm'))\n"
        "    return Model('m', (2, 2, 1), Layout('m', classes, params), lambda p, x: x)\n",
        "layer rnn is of kind 'lstm', which the predictor cannot predict; it predicts conv and dense layers"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_model_file_is_one_line(tmp_path, case):
    text, message = BAD[case]
    (tmp_path / "m.py").write_text(text)
    with pytest.raises(ValueError) as raised:
        models.get(f"{tmp_path / 'm.py'}:build", 10)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="no file"):
        models.get(f"{tmp_path / 'none.py'}:build", 10)


@pytest.mark.cluster
def test_the_example_trains_with_local_sgd_through_the_stage_and_with_mp2(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "small_cnn.py")
    spec = "small_cnn.py:small_cnn"
    common = ["--workers", "2", "--dataset", "synthetic", "--worker-batch", "50", "--epochs", "2", "--mixup", "0",
              "--verify-sync", "--step-timeout", "120", "--connect-timeout", "120"]
    absolute = ["--model", str(tmp_path / spec), *common]
    # Local SGD, collecting the snapshots the stage trains on.
    ls = run("mp2_local.py", *absolute, "--method", "localsgd", "--sync-every", "4", "--snapshot-every", "2",
             "--out", str(tmp_path / "ls"))
    assert ls.returncode == 0, ls.stdout[-3000:]
    stage = ["mp2_train_stage.py", "--model", f"{tmp_path / spec}", "--dataset", "synthetic",
             "--snapshots", str(tmp_path / "ls" / "snapshots"), "--epochs", "1", "--image-batches", "2",
             "--push", "front+head"]  # MP²'s pushed group (the measured preset's, as the runs above)
    too_big = run(*stage, "--out", str(tmp_path / "big"), "--max-predictor-weights", "1000")
    assert too_big.returncode != 0 and "give --dense-rank 16" in too_big.stdout and "Traceback" not in too_big.stdout
    trained = run(*stage, "--dense-rank", "8", "--out", str(tmp_path / "predictor"))
    assert trained.returncode == 0, trained.stdout[-3000:]
    assert (tmp_path / "predictor" / "predictor.npz").exists()
    # From the user's directory, the file named relative to it: the launcher makes it absolute for the PS and
    # workers. MP² predicts with the predictor the stage trained (its dense heads of rank 8).
    mp2 = run("mp2_local.py", "--model", spec, *common, "--method", "mp2", "--predictor", "predictor",
              "--out", str(tmp_path / "mp2"), cwd=tmp_path)
    assert mp2.returncode == 0, mp2.stdout[-3000:]
    for name in ("mp2", "ls"):
        assert "steps_verified_in_sync" in (tmp_path / name / "metrics.jsonl").read_text()
