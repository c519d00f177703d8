"""A dataset of one's own (`--dataset path.npz` or a folder of .npy files): real images (scikit-learn's digits
saved in tf.keras.datasets' layout) load and train on a local cluster; each bad variant is one line."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from data import DataError, load
from data.loader import canonical_name, class_count
from tests.cluster import run


def _digits() -> dict[str, np.ndarray]:
    d = load_digits()
    images = np.round(d.images / 16 * 255).astype(np.uint8)  # [N, 8, 8], uint8 as Keras gives MNIST
    return {"x_train": images[:1400], "y_train": d.target[:1400], "x_test": images[1400:], "y_test": d.target[1400:]}


@pytest.mark.unit
def test_an_npz_and_a_folder_of_npy_files_load_as_the_arrays_they_hold(tmp_path):
    arrays = _digits()
    np.savez(tmp_path / "digits.npz", **arrays)
    folder = tmp_path / "digits"
    folder.mkdir()
    for name, value in arrays.items():
        np.save(folder / f"{name}.npy", value[:, None] if name == "y_train" else value)  # labels [N, 1] too
    for where in (tmp_path / "digits.npz", folder):
        ds = load(str(where), image_shape=(8, 8, 1))
        assert ds.classes == 10 and ds.train_x.shape == (1400, 8, 8, 1) and ds.test_x.shape == (397, 8, 8, 1)
        np.testing.assert_array_equal(ds.train_x[..., 0], arrays["x_train"] / np.float32(255))
        np.testing.assert_array_equal(ds.test_y, arrays["y_test"])
        assert canonical_name(str(where)) == str(where.resolve()) and class_count(str(where)) == 10
    fitted = load(str(tmp_path / "digits.npz"), image_shape=(28, 28, 1), fit_input=True)
    assert fitted.train_x.shape == (1400, 28, 28, 1)


def _bad(tmp_path, **change) -> str:
    arrays = {**_digits(), **change}
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(DataError) as raised:
        load(str(path), image_shape=(8, 8, 1))
    message = str(raised.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.mark.unit
def test_each_bad_variant_is_one_line_that_says_what_is_wrong(tmp_path):
    x = _digits()
    assert "lacks y_test" in _bad(tmp_path, y_test=None)
    assert "has 1399 labels for 1400 images" in _bad(tmp_path, y_train=x["y_train"][:-1])
    assert "negative label" in _bad(tmp_path, y_test=x["y_test"] - 1)
    assert "integer labels" in _bad(tmp_path, y_train=x["y_train"].astype(np.float32))
    assert "outside [0, 1]" in _bad(tmp_path, x_train=x["x_train"].astype(np.float32))  # 0..255 floats: not scaled
    assert "uint8 (0..255) or float" in _bad(tmp_path, x_test=x["x_test"].astype(np.int16))
    assert "but x_test's" in _bad(tmp_path, x_test=x["x_test"][:, :4])
    assert "nothing pickled is read" in _bad(tmp_path, y_test=np.array([{"a": 1}] * 397, dtype=object))
    with pytest.raises(DataError, match="no such file or folder"):
        load(str(tmp_path / "none.npz"))
    np.savez(tmp_path / "ok.npz", **x)
    with pytest.raises(DataError, match="names its files itself"):
        load(str(tmp_path / "ok.npz"), data_dir=str(tmp_path))


@pytest.mark.cluster
def test_a_cluster_trains_on_an_npz_given_by_a_relative_path_and_a_bad_one_is_one_line(tmp_path):
    np.savez(tmp_path / "digits.npz", **_digits())
    common = ["--workers", "2", "--worker-batch", "50", "--fit-input", "--epochs", "2", "--lr", "0.003", "--mixup", "0",
              "--verify-sync", "--step-timeout", "60", "--connect-timeout", "60"]
    done = run("mp2_local.py", *common, "--dataset", "digits.npz", "--method", "localsgd", "--sync-every", "4",
               "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "steps_verified_in_sync" in (tmp_path / "run" / "metrics.jsonl").read_text()
    assert f"your own files ({tmp_path / 'digits.npz'})" in (tmp_path / "run" / "summary.json").read_text()
    arrays = _digits()
    np.savez(tmp_path / "short.npz", **{**arrays, "y_train": arrays["y_train"][:-1]})
    bad = run("mp2_local.py", *common, "--dataset", "short.npz", "--out", str(tmp_path / "bad"), cwd=tmp_path)
    assert bad.returncode != 0 and "has 1399 labels for 1400 images" in bad.stdout and "Traceback" not in bad.stdout
