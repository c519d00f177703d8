"""data/: loaders for every standard file format, search and error messages, partitioning, mixup."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import data
from data import catalog, digits, fit, loader, locate
from data.subset import stratified_subset

pytestmark = pytest.mark.unit

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_PY = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No user settings leak in; the Keras cache is an empty folder of this test's own."""
    monkeypatch.delenv("MP2_DATA", raising=False)
    monkeypatch.delenv("MP2_DOWNLOAD", raising=False)
    keras_home = tmp_path / "keras-home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    yield
    # Each test starts from empty caches and leaves no 100-MB datasets behind.
    for cached in (loader._files_cached, loader._read_files, loader._digits_cached,
                   digits.read_digits):
        cached.cache_clear()


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Hide /usr/share/datasets (which has Fashion-MNIST on this machine and in CI)."""
    monkeypatch.setattr(locate, "DEBIAN_DATASETS", tmp_path / "no-debian")


def keras_datasets(tmp_path) -> Path:
    return tmp_path / "keras-home" / "datasets"


# ---------------------------------------------------------------- fixture files in the real formats

def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def idx_images(count: int, offset: int) -> np.ndarray:
    """Row/column-asymmetric values, so a transposed or shifted read cannot pass."""
    n, r, c = np.indices((count, 28, 28))
    return ((n * 50 + r * 7 + c * 3 + offset) % 256).astype(np.uint8)


def write_idx_set(folder: Path, gz: bool, train_labels=(3, 0, 9), test_labels=(7, 1)) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: idx_images(len(train_labels), 0),
        IDX_NAMES[1]: np.array(train_labels, np.uint8),
        IDX_NAMES[2]: idx_images(len(test_labels), 100),
        IDX_NAMES[3]: np.array(test_labels, np.uint8),
    }
    for name, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


def cifar_value(n, r, c, ch):
    return (n * 31 + r * 5 + c * 3 + ch * 80) % 256


def cifar_hwc(count: int, first: int) -> np.ndarray:
    """The images as HWC, the way the loader must return them."""
    n, r, c, ch = np.indices((count, 32, 32, 3))
    return cifar_value(n + first, r, c, ch).astype(np.uint8)


def cifar_rows(count: int, first: int) -> np.ndarray:
    """The same images as stored: per image 1024 red, 1024 green, 1024 blue, each row-major.
    Built from flat positions, independently of the loader's reshape/transpose."""
    n, k = np.indices((count, 3072))
    return cifar_value(n + first, (k % 1024) // 32, k % 32, k // 1024).astype(np.uint8)


def cifar_pickle(batch: dict, protocol: int = pickle.HIGHEST_PROTOCOL,
                 legacy: bool = False) -> bytes:
    raw = pickle.dumps(batch, protocol=protocol)
    if legacy:
        # The official files were written by numpy 1.x, which names numpy.core.multiarray.
        assert protocol <= 3  # text GLOBAL opcodes: renaming cannot break a length field
        assert b"numpy._core.multiarray" in raw
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return raw


def write_cifar10(folder: Path, binary: bool):
    """Writes the six files; returns train images (HWC), train labels, test images, test labels."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [2, 1, 2, 1, 2, 3]  # five training batches, then the test batch
    labels = [[1, 9], [0], [5, 4], [8], [2, 3], [7, 6, 9]]
    first = 0
    for name, size, batch_labels in zip(CIFAR10_PY, sizes, labels):
        rows = cifar_rows(size, first)
        first += size
        if binary:
            records = np.concatenate([np.array(batch_labels, np.uint8)[:, None], rows], axis=1)
            (folder / f"{name}.bin").write_bytes(records.tobytes())
        else:
            batch = {b"batch_label": name.encode(), b"labels": batch_labels, b"data": rows,
                     b"filenames": [b"x.png"] * size}
            # Every pickle spelling numpy uses for arrays: 1.x (legacy), 2.x <=4, 2.x protocol 5.
            variant = {"data_batch_1": dict(protocol=3, legacy=True),
                       "data_batch_2": dict(protocol=3)}.get(name, {})
            (folder / name).write_bytes(cifar_pickle(batch, **variant))
    all_labels = np.array(sum(labels[:5], []))
    return cifar_hwc(8, 0), all_labels, cifar_hwc(3, 8), np.array(labels[5])


def write_cifar100(folder: Path, binary: bool):
    """Writes train and test; returns train images (HWC), fine labels, test images, fine labels."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": ([99, 0, 57], [19, 4, 0], 0), "test": ([42, 98], [3, 7], 3)}
    for name, (fine, coarse, first) in splits.items():
        rows = cifar_rows(len(fine), first)
        if binary:
            head = np.array([coarse, fine], np.uint8).T
            (folder / f"{name}.bin").write_bytes(np.concatenate([head, rows], axis=1).tobytes())
        else:
            batch = {b"filenames": [b"x.png"] * len(fine), b"batch_label": name.encode(),
                     b"fine_labels": fine, b"coarse_labels": coarse, b"data": rows}
            (folder / name).write_bytes(cifar_pickle(batch))
    return cifar_hwc(3, 0), np.array([99, 0, 57]), cifar_hwc(2, 3), np.array([42, 98])


def assert_images(actual: np.ndarray, expected_uint8: np.ndarray) -> None:
    assert actual.dtype == np.float32 and actual.shape == expected_uint8.shape
    np.testing.assert_array_equal(actual, expected_uint8.astype(np.float32) / 255)


def assert_labels(actual: np.ndarray, expected) -> None:
    assert actual.dtype == np.int32
    np.testing.assert_array_equal(actual, np.asarray(expected))


# --------------------------------------------------------------------------------------- loaders

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize("subfolder", ["", "named"])
def test_idx_loader_reads_pixels_and_labels_exactly(tmp_path, no_system_data, name, gz, subfolder):
    folder = tmp_path / "d" / ({"mnist": "mnist", "fashion_mnist": "fashion-mnist"}[name]
                               if subfolder else "")
    arrays = write_idx_set(folder, gz)
    ds = data.load(name, data_dir=tmp_path / "d")
    assert (ds.name, ds.classes, ds.image_shape) == (name, 10, (28, 28, 1))
    assert_images(ds.train_x, arrays[IDX_NAMES[0]][..., None])
    assert_images(ds.test_x, arrays[IDX_NAMES[2]][..., None])
    assert ds.train_x[1, 2, 5, 0] == np.float32((50 + 14 + 15) / 255)  # image 1, row 2, column 5
    assert_labels(ds.train_y, [3, 0, 9])
    assert_labels(ds.test_y, [7, 1])
    assert Path(ds.source) == folder


def test_names_are_normalised_and_unknown_names_listed(tmp_path):
    write_idx_set(tmp_path / "d", gz=False)
    assert data.load("Fashion-MNIST", data_dir=tmp_path / "d").name == "fashion_mnist"
    assert data.load("FASHION_mnist", data_dir=tmp_path / "d").name == "fashion_mnist"
    assert data.NAMES == ("mnist", "fashion_mnist", "cifar10", "cifar100",
                          "fashion_mnist_permuted", "digits", "synthetic")
    with pytest.raises(data.DataError) as error:
        data.load("imagenet")
    assert "imagenet" in str(error.value)
    assert all(known in str(error.value) for known in data.NAMES)


@pytest.mark.parametrize("placement", ["flat", "archive-folder", "named/archive-folder", "keras"])
def test_cifar10_python_batches(tmp_path, no_system_data, placement):
    if placement == "keras":  # where Keras 3's cifar10.load_data() unpacks the archive
        folder = keras_datasets(tmp_path) / "cifar-10-batches-py-target" / "cifar-10-batches-py"
        data_dir = None
    else:
        data_dir = tmp_path / "d"
        folder = data_dir / {"flat": "", "archive-folder": "cifar-10-batches-py",
                             "named/archive-folder": "cifar10/cifar-10-batches-py"}[placement]
    train_x, train_y, test_x, test_y = write_cifar10(folder, binary=False)
    ds = data.load("cifar10", data_dir=data_dir)
    assert (ds.classes, ds.image_shape, len(ds.train_y), len(ds.test_y)) == (10, (32, 32, 3), 8, 3)
    assert_images(ds.train_x, train_x)
    assert_images(ds.test_x, test_x)
    assert_labels(ds.train_y, train_y)
    assert_labels(ds.test_y, test_y)
    # HWC: image 0, row 1, column 2, blue channel = value stored at 2*1024 + 1*32 + 2.
    assert ds.train_x[0, 1, 2, 2] == np.float32((5 + 6 + 160) / 255)


def test_cifar10_binary_records(tmp_path, no_system_data):
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path / "d" / "cifar-10-batches-bin",
                                                     binary=True)
    ds = data.load("cifar-10", data_dir=tmp_path / "d")
    assert_images(ds.train_x, train_x)
    assert_images(ds.test_x, test_x)
    assert_labels(ds.train_y, train_y)
    assert_labels(ds.test_y, test_y)


@pytest.mark.parametrize("binary", [False, True], ids=["python", "binary"])
def test_cifar100_uses_fine_labels(tmp_path, no_system_data, binary):
    subdir = "cifar-100-binary" if binary else "cifar-100-python"
    train_x, train_y, test_x, test_y = write_cifar100(tmp_path / "d" / subdir, binary)
    ds = data.load("cifar100", data_dir=tmp_path / "d")
    assert (ds.classes, ds.image_shape) == (100, (32, 32, 3))
    assert_images(ds.train_x, train_x)
    assert_images(ds.test_x, test_x)
    assert_labels(ds.train_y, train_y)
    assert_labels(ds.test_y, test_y)


def test_mnist_npz_in_keras_cache(tmp_path, no_system_data):
    keras_datasets(tmp_path).mkdir(parents=True)
    train, test = idx_images(3, 0), idx_images(2, 9)
    np.savez(keras_datasets(tmp_path) / "mnist.npz", x_train=train,
             y_train=np.array([1, 2, 3], np.uint8), x_test=test, y_test=np.array([4, 5], np.uint8))
    ds = data.load("mnist")
    assert_images(ds.train_x, train[..., None])
    assert_labels(ds.test_y, [4, 5])
    assert "keras-home" in ds.source


def test_search_order_data_dir_then_env(tmp_path, monkeypatch, no_system_data):
    write_idx_set(tmp_path / "env", gz=True, train_labels=(1, 1, 1))
    monkeypatch.setenv("MP2_DATA", str(tmp_path / "env"))
    # No --data-dir: $MP2_DATA.
    assert_labels(data.load("mnist").train_y, [1, 1, 1])
    # Files in --data-dir win.
    write_idx_set(tmp_path / "flag", gz=True, train_labels=(2, 2, 2))
    assert_labels(data.load("mnist", data_dir=tmp_path / "flag").train_y, [2, 2, 2])


def test_repeated_loads_are_cached_and_read_only(tmp_path):
    write_idx_set(tmp_path / "d", gz=True)
    first = data.load("mnist", data_dir=tmp_path / "d")
    assert data.load("mnist", data_dir=str(tmp_path / "d")) is first
    with pytest.raises(ValueError):
        first.train_x[0, 0, 0, 0] = 1.0  # a shared cached array must not be changed in place


# ----------------------------------------------------------------------------------- missing data

EXPECTED_FILES = {
    "mnist": list(IDX_NAMES) + ["mnist.npz"],
    "fashion_mnist": list(IDX_NAMES),
    "cifar10": CIFAR10_PY + [f"{f}.bin" for f in CIFAR10_PY] + ["cifar-10-batches-py"],
    "cifar100": ["train", "test", "train.bin", "test.bin", "cifar-100-python"],
}


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_missing_data_error_lists_files_places_and_remedy(tmp_path, monkeypatch, no_system_data,
                                                          name):
    env_dir = tmp_path / "env-dir"
    env_dir.mkdir()
    monkeypatch.setenv("MP2_DATA", str(env_dir))
    with pytest.raises(data.DataError) as error:
        data.load(name)
    message = str(error.value)
    places = [str(env_dir), str(tmp_path / "no-debian"), str(keras_datasets(tmp_path)),
              "--data-dir", "MP2_DATA"]
    for needle in [name] + EXPECTED_FILES[name] + places:
        assert needle in message, f"{needle!r} missing from:\n{message}"
    if name == "fashion_mnist":
        assert "apt-get install dataset-fashion-mnist" in message
    else:
        assert "https://" in message


@pytest.mark.parametrize("state", ["missing", "empty", "other files"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "fashion_mnist_permuted", "cifar10",
                                  "cifar100"])
def test_explicit_data_dir_without_the_files_is_an_error_naming_them(tmp_path, monkeypatch, name,
                                                                     state):
    """Never a fall-back: the system copy (/usr/share/datasets/fashion-mnist here) and
    $MP2_DATA both hold usable files, yet a --data-dir without them is refused."""
    write_idx_set(tmp_path / "env", gz=True)
    monkeypatch.setenv("MP2_DATA", str(tmp_path / "env"))
    data_dir = tmp_path / "given"
    if state != "missing":
        data_dir.mkdir()
    if state == "other files":
        (data_dir / "notes.txt").write_text("not a dataset")
    with pytest.raises(data.DataError) as error:
        data.load(name, data_dir=data_dir)
    message = str(error.value)
    words = {"missing": "does not exist", "empty": "is empty", "other files": "does not hold"}
    assert f"--data-dir {data_dir} {words[state]}" in message
    base = "fashion_mnist" if name == "fashion_mnist_permuted" else name
    for needle in EXPECTED_FILES[base]:
        assert needle in message, f"{needle!r} missing from:\n{message}"
    assert str(tmp_path / "env") not in message  # not searched, so not listed as searched


def test_explicit_data_dir_is_never_replaced_by_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("MP2_DOWNLOAD", "1")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # a download attempt would fail loudly
    with pytest.raises(data.DataError, match="is empty"):
        (tmp_path / "given").mkdir()
        data.load("mnist", data_dir=tmp_path / "given")


def test_incomplete_copy_is_reported(tmp_path, no_system_data):
    folder = tmp_path / "d" / "cifar-10-batches-bin"
    write_cifar10(folder, binary=True)
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(data.DataError, match="lacks data_batch_4.bin"):
        data.load("cifar10", data_dir=tmp_path / "d")


def test_download_only_when_asked(tmp_path, monkeypatch, no_system_data):
    calls = []

    def load_data():
        calls.append(1)
        return (idx_images(2, 0), np.array([3, 4])), (idx_images(1, 5), np.array([5]))

    fake_tf = types.SimpleNamespace(keras=types.SimpleNamespace(
        datasets=types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=load_data))))
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    with pytest.raises(data.DataError):
        data.load("mnist")
    assert calls == []  # never touches the network by default
    monkeypatch.setenv("MP2_DOWNLOAD", "1")
    ds = data.load("mnist")
    assert calls == [1] and ds.image_shape == (28, 28, 1)
    assert_images(ds.train_x, idx_images(2, 0)[..., None])
    assert_labels(ds.train_y, [3, 4])

    def offline():
        raise OSError("no route to host")

    fake_tf.keras.datasets.mnist.load_data = offline
    with pytest.raises(data.DataError, match="(?s)not found.*download failed.*no route to host"):
        data.load("mnist")


# ----------------------------------------------------------------------------------- damaged files

def damage_truncated_gz(root: Path) -> Path:
    write_idx_set(root, gz=True)
    path = root / f"{IDX_NAMES[0]}.gz"
    path.write_bytes(path.read_bytes()[:200])
    return path


def damage_bad_gzip_bytes(root: Path) -> Path:
    write_idx_set(root, gz=True)
    path = root / f"{IDX_NAMES[2]}.gz"
    raw = bytearray(path.read_bytes())
    raw[20:40] = b"\xff" * 20
    path.write_bytes(bytes(raw))
    return path


def damage_wrong_magic(root: Path) -> Path:
    write_idx_set(root, gz=False)
    path = root / IDX_NAMES[1]
    path.write_bytes(idx_bytes(np.zeros((3, 1, 1), np.uint8)))  # an IDX3 where IDX1 belongs
    return path


def damage_short_idx(root: Path) -> Path:
    write_idx_set(root, gz=False)
    path = root / IDX_NAMES[2]
    path.write_bytes(path.read_bytes()[:-10])
    return path


def damage_header_only(root: Path) -> Path:
    write_idx_set(root, gz=False)
    path = root / IDX_NAMES[3]
    path.write_bytes(b"\x00\x00")
    return path


def damage_count_mismatch(root: Path) -> Path:
    write_idx_set(root, gz=False)  # 3 training images ...
    path = root / IDX_NAMES[1]
    path.write_bytes(idx_bytes(np.array([1, 2], np.uint8)))  # ... but 2 labels
    return path


def damage_label_out_of_range(root: Path) -> Path:
    write_idx_set(root, gz=False, train_labels=(1, 2, 10))
    return root / IDX_NAMES[1]


def damage_garbage_pickle(root: Path) -> Path:
    write_cifar10(root, binary=False)
    path = root / "data_batch_3"
    path.write_bytes(b"\x80\x04this is not a pickle")
    return path


def damage_truncated_pickle(root: Path) -> Path:
    write_cifar10(root, binary=False)
    path = root / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    return path


def damage_pickle_of_wrong_shape(root: Path) -> Path:
    write_cifar10(root, binary=False)
    path = root / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    return path


def damage_bin_record_size(root: Path) -> Path:
    write_cifar10(root, binary=True)
    path = root / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    return path


def damage_npz(root: Path) -> Path:
    root.mkdir(parents=True)
    path = root / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 broken zip")
    return path


DAMAGES = {
    "truncated gz": ("mnist", damage_truncated_gz),
    "corrupted gz": ("fashion_mnist", damage_bad_gzip_bytes),
    "wrong IDX magic": ("mnist", damage_wrong_magic),
    "short IDX": ("mnist", damage_short_idx),
    "header only": ("fashion_mnist", damage_header_only),
    "image/label count mismatch": ("mnist", damage_count_mismatch),
    "label out of range": ("mnist", damage_label_out_of_range),
    "garbage pickle": ("cifar10", damage_garbage_pickle),
    "truncated pickle": ("cifar10", damage_truncated_pickle),
    "wrong array shape": ("cifar10", damage_pickle_of_wrong_shape),
    "bad record size": ("cifar10", damage_bin_record_size),
    "broken npz": ("mnist", damage_npz),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_file_gives_data_error_naming_it(tmp_path, no_system_data, damage):
    name, make = DAMAGES[damage]
    path = make(tmp_path / "d")
    with pytest.raises(data.DataError) as error:
        data.load(name, data_dir=tmp_path / "d")
    assert str(path) in str(error.value)


class _RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running_it(tmp_path, no_system_data):
    folder = tmp_path / "d" / "cifar-100-python"
    write_cifar100(folder, binary=False)
    marker = tmp_path / "pwned"
    evil = {b"data": _RunsAShellCommand(marker), b"fine_labels": [0]}
    (folder / "train").write_bytes(pickle.dumps(evil))
    with pytest.raises(data.DataError) as error:
        data.load("cifar100", data_dir=tmp_path / "d")
    assert str(folder / "train") in str(error.value)
    assert "refused" in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


def test_image_shape_or_classes_mismatch(tmp_path, no_system_data):
    with pytest.raises(data.DataError) as error:
        data.load("cifar10", image_shape=(28, 28, 1))
    assert "28x28x1" in str(error.value) and "cifar10 has 32x32x3" in str(error.value)
    with pytest.raises(data.DataError, match="fashion_mnist has 28x28x1"):
        data.load("fashion_mnist", image_shape=(32, 32, 3))
    with pytest.raises(data.DataError, match="cifar10 has 10"):
        data.load("cifar10", classes=100)
    write_idx_set(tmp_path / "d", gz=False)
    assert data.load("mnist", tmp_path / "d", image_shape=(28, 28, 1), classes=10).classes == 10


# ------------------------------------------------------------------------------ schedule and mixup

def test_schedule_partitions_each_global_batch():
    schedule = data.Schedule(n_train=1050, workers=8, worker_batch=16, seed=3)
    assert (schedule.global_batch, schedule.steps_per_epoch) == (128, 8)
    twin = data.Schedule(n_train=1050, workers=8, worker_batch=16, seed=3)
    seen = []
    for step in range(schedule.steps_per_epoch):
        global_batch = schedule.global_indices(2, step)
        slices = [schedule.worker_indices(2, step, w) for w in range(8)]
        assert all(len(part) == 16 for part in slices)
        np.testing.assert_array_equal(np.concatenate(slices), global_batch)  # cover, in order
        assert len(np.unique(global_batch)) == 128                            # disjoint
        for w in range(8):
            np.testing.assert_array_equal(slices[w], twin.worker_indices(2, step, w))
        seen.append(global_batch)
    epoch_indices = np.concatenate(seen)
    assert len(np.unique(epoch_indices)) == len(epoch_indices)  # no image twice in an epoch
    assert epoch_indices.min() >= 0 and epoch_indices.max() < 1050
    assert not np.array_equal(schedule.global_indices(3, 0), schedule.global_indices(2, 0))
    other_seed = data.Schedule(n_train=1050, workers=8, worker_batch=16, seed=4)
    assert not np.array_equal(other_seed.global_indices(2, 0), schedule.global_indices(2, 0))
    with pytest.raises(IndexError):
        schedule.worker_indices(0, 0, 8)


def test_schedule_batch_larger_than_data():
    with pytest.raises(data.DataError, match="larger than the training data"):
        data.Schedule(n_train=999, workers=8, worker_batch=125, seed=0)


def test_mixup_mixes_images_and_labels():
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    mixed_x, soft_y = data.mixup(x, y, 10, 1.0, np.random.default_rng(1))
    assert mixed_x.dtype == soft_y.dtype == np.float32
    assert mixed_x.shape == x.shape and soft_y.shape == (64, 10)
    assert mixed_x.min() >= 0 and mixed_x.max() <= 1
    np.testing.assert_allclose(soft_y.sum(axis=1), 1, rtol=1e-6)
    assert soft_y.min() >= 0
    assert not np.allclose(mixed_x, x)                         # something was mixed in
    assert (np.count_nonzero(soft_y, axis=1) == 2).any()       # some labels are two-class blends
    # The same lambda and partner mix the images and the labels.
    lam = soft_y[np.arange(64), y].min()
    assert 0 < lam < 1


def test_mixup_off_gives_one_hot_and_one_hot_checks_range():
    x = np.zeros((3, 2, 2, 1), np.float32)
    same_x, labels = data.mixup(x, np.array([0, 2, 1]), 3, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(same_x, x)
    np.testing.assert_array_equal(labels, np.eye(3, dtype=np.float32)[[0, 2, 1]])
    np.testing.assert_array_equal(data.one_hot(np.array([1]), 2), [[0, 1]])
    with pytest.raises(data.DataError):
        data.one_hot(np.array([-1]), 10)  # numpy would silently wrap it to class 9


# ------------------------------------------------------------------------------------ synthetic

def test_synthetic_is_deterministic_and_shaped():
    a = data.synthetic((32, 32, 3), classes=7, train_size=70, test_size=21, seed=5)
    assert a.image_shape == (32, 32, 3) and a.classes == 7
    assert a.train_x.shape == (70, 32, 32, 3) and a.test_x.shape == (21, 32, 32, 3)
    assert a.train_x.dtype == np.float32 and a.train_y.dtype == np.int32
    assert 0 <= a.train_x.min() and a.train_x.max() <= 1
    assert set(a.train_y) == set(range(7))
    again = data.synthetic((32, 32, 3), classes=7, train_size=70, test_size=21, seed=5)
    np.testing.assert_array_equal(again.train_x, a.train_x)
    np.testing.assert_array_equal(again.test_y, a.test_y)
    via_load = data.load("synthetic", image_shape=(32, 32, 3), classes=7, seed=5)
    np.testing.assert_array_equal(via_load.train_x, data.synthetic((32, 32, 3), 7, seed=5).train_x)
    other = data.synthetic((32, 32, 3), classes=7, train_size=70, test_size=21, seed=6)
    assert not np.allclose(other.train_x, a.train_x)
    default = data.load("synthetic")
    assert default.image_shape == (28, 28, 1) and default.classes == 10
    assert "seed=0" in default.source


def test_synthetic_is_learnable():
    ds = data.synthetic(seed=1)
    means = np.stack([ds.train_x[ds.train_y == c].mean(axis=0) for c in range(ds.classes)])
    distances = ((ds.test_x[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    accuracy = (distances.argmin(axis=1) == ds.test_y).mean()
    assert accuracy > 0.5  # chance is 0.1


# ----------------------------------------------------------------------------- real Fashion-MNIST

def test_real_fashion_mnist_from_debian_package():
    """The Debian package dataset-fashion-mnist (installed here and in CI)."""
    assert (FASHION_DEBIAN / "train-images-idx3-ubyte.gz").is_file(), \
        "install it: apt-get install dataset-fashion-mnist"
    ds = data.load("fashion-mnist")
    assert Path(ds.source) == FASHION_DEBIAN
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    assert ds.classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.train_x.min() == 0 and ds.train_x.max() == 1
    np.testing.assert_array_equal(np.bincount(ds.train_y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_y), [1000] * 10)
    assert_labels(ds.train_y[:5], [9, 0, 0, 3, 0])       # ankle boot, T-shirt, T-shirt, dress, ...
    assert abs(float(ds.train_x.mean()) - 0.2860) < 1e-3  # the well-known Fashion-MNIST mean


# --------------------------------------------------------------------------------------- digits

def sklearn_digits():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return bunch.images, bunch.target


def test_digits_shape_classes_and_fixed_stratified_split():
    images, labels = sklearn_digits()
    assert images.shape == (1797, 8, 8)
    ds = data.load("digits")
    assert (ds.name, ds.classes, ds.image_shape) == ("digits", 10, (28, 28, 1))
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    assert 0 <= ds.train_x.min() and ds.train_x.max() <= 1 and ds.train_x.max() > 0.9
    # Worked out here from the documented rule: every 5th image of each class, in file order.
    test_rows = np.sort(np.concatenate([np.flatnonzero(labels == c)[4::5] for c in range(10)]))
    train_rows = np.setdiff1d(np.arange(1797), test_rows)
    assert len(ds.train_y) + len(ds.test_y) == 1797 and len(ds.test_y) == len(test_rows) == 355
    assert_labels(ds.test_y, labels[test_rows])
    assert_labels(ds.train_y, labels[train_rows])
    upscale = fit.resize_bilinear(images[test_rows, :, :, None].astype(np.float32) / 16, (28, 28))
    np.testing.assert_allclose(ds.test_x, upscale, atol=1e-6)
    np.testing.assert_allclose(
        ds.train_x, fit.resize_bilinear(images[train_rows, :, :, None] / 16, (28, 28)), atol=1e-6)
    # Stratified 80/20: every class has a fifth of its images (rounded down) in the test set.
    np.testing.assert_array_equal(np.bincount(ds.test_y), np.bincount(labels) // 5)
    # The split does not move with the seed (a fresh read, not the cache, answers seed=7).
    loader._digits_cached.cache_clear()
    digits.read_digits.cache_clear()
    again = data.load("digits", seed=7)
    np.testing.assert_array_equal(again.test_y, ds.test_y)
    np.testing.assert_array_equal(again.train_x, ds.train_x)


def test_bilinear_upscale_weights_by_hand():
    image = np.array([[0.0, 1.0], [1.0, 1.0]], np.float32)[None, :, :, None]
    # Pixel-centre sampling of 2 -> 4: inputs at 0, 0.25, 0.75, 1 (edges clamped).
    along = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], np.float32)
    expected = along @ image[0, :, :, 0] @ along.T
    np.testing.assert_allclose(fit.resize_bilinear(image, (4, 4))[0, :, :, 0], expected,
                               atol=1e-6)
    assert expected[0, 1] == 0.25 and expected[3, 3] == 1  # spot values, worked out by hand
    flat = np.full((1, 8, 8, 1), 0.5, np.float32)
    np.testing.assert_allclose(fit.resize_bilinear(flat, (28, 28)), 0.5, atol=1e-6)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(data.DataError, match="pip install scikit-learn"):
        data.load("digits")


def test_fileless_datasets_refuse_a_data_dir(tmp_path):
    for name in ("digits", "synthetic"):
        with pytest.raises(data.DataError, match=f"{name} reads no files"):
            data.load(name, data_dir=tmp_path)


# ---------------------------------------------------------------------- fashion_mnist_permuted

def test_fashion_permutation_is_the_documented_bijection_without_fixed_points():
    permutation = catalog.FASHION_PERMUTATION
    assert permutation == tuple((3 * label + 1) % 10 for label in range(10))
    assert sorted(permutation) == list(range(10))
    assert all(new != old for old, new in enumerate(permutation))


def test_permuted_fashion_relabels_train_and_test(tmp_path, no_system_data):
    write_idx_set(tmp_path / "d", gz=True, train_labels=(3, 0, 9), test_labels=(7, 1))
    plain = data.load("fashion_mnist", tmp_path / "d")
    permuted = data.load("fashion-mnist-permuted", tmp_path / "d")
    assert permuted.name == "fashion_mnist_permuted" and permuted.classes == 10
    np.testing.assert_array_equal(permuted.train_x, plain.train_x)
    np.testing.assert_array_equal(permuted.test_x, plain.test_x)
    assert_labels(permuted.train_y, [0, 1, 8])   # 3 -> 10 % 10, 0 -> 1, 9 -> 28 % 10
    assert_labels(permuted.test_y, [2, 4])       # 7 -> 22 % 10, 1 -> 4
    with pytest.raises(ValueError):
        permuted.train_y[0] = 5


def test_real_permuted_fashion_mnist():
    plain = data.load("fashion_mnist")
    permuted = data.load("fashion_mnist_permuted")
    mapping = np.array(catalog.FASHION_PERMUTATION)
    for new, old in ((permuted.train_y, plain.train_y), (permuted.test_y, plain.test_y)):
        np.testing.assert_array_equal(new, mapping[old])
        assert (new != old).all()
    np.testing.assert_array_equal(permuted.test_x, plain.test_x)
    np.testing.assert_array_equal(np.bincount(permuted.train_y), [6000] * 10)
    assert permuted.provenance["transforms"] == [
        "labels permuted by [1, 4, 7, 0, 3, 6, 9, 2, 5, 8] (label i becomes entry i), "
        "train and test"]


# ------------------------------------------------------------------------------------ fit_input

def test_fit_input_pads_centred_and_repeats_grey(tmp_path, no_system_data):
    arrays = write_idx_set(tmp_path / "d", gz=False)
    ds = data.load("mnist", tmp_path / "d", image_shape=(32, 32, 3), fit_input=True)
    assert ds.image_shape == (32, 32, 3) and ds.train_x.shape == (3, 32, 32, 3)
    assert ds.train_x.dtype == np.float32
    original = arrays[IDX_NAMES[0]].astype(np.float32) / 255
    for channel in range(3):
        np.testing.assert_array_equal(ds.train_x[:, 2:30, 2:30, channel], original)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (ds.train_x[:, border] == 0).all() and (ds.test_x[:, border] == 0).all()
    np.testing.assert_array_equal(ds.test_x[:, 2:30, 2:30, 2],
                                  arrays[IDX_NAMES[2]].astype(np.float32) / 255)
    # Three channels stored as one (stride 0); a batch taken out of it is an ordinary array.
    assert ds.train_x.strides[3] == 0
    batch = ds.train_x[np.array([2, 0])]
    assert batch.flags.c_contiguous and batch.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError):
        ds.train_x[0, 0, 0, 0] = 1.0
    assert ds.provenance["transforms"] == [
        "zero-padded 28x28 to 32x32 (rows 2 above, 2 below; columns 2 left, 2 right)",
        "grey channel repeated to 3"]


def test_fit_input_odd_padding_puts_the_extra_row_below(tmp_path, no_system_data):
    arrays = write_idx_set(tmp_path / "d", gz=False)
    ds = data.load("mnist", tmp_path / "d", image_shape=(31, 29, 1), fit_input=True)
    assert ds.train_x.shape == (3, 31, 29, 1)
    np.testing.assert_array_equal(ds.train_x[:, 1:29, 0:28, 0],
                                  arrays[IDX_NAMES[0]].astype(np.float32) / 255)
    assert (ds.train_x[:, 0] == 0).all() and (ds.train_x[:, 29:] == 0).all()
    assert (ds.train_x[:, :, 28] == 0).all()


def test_shape_mismatch_without_fit_input_names_the_flag(tmp_path, no_system_data):
    with pytest.raises(data.DataError) as error:
        data.load("fashion_mnist", image_shape=(32, 32, 3))
    message = str(error.value)
    assert "fashion_mnist has 28x28x1" in message and "pass --fit-input" in message
    with pytest.raises(data.DataError, match="digits has 28x28x1.*--fit-input"):
        data.load("digits", image_shape=(32, 32, 3))


@pytest.mark.parametrize("name, shape, why", [
    ("cifar10", (28, 28, 3), "will not shrink 32x32 to 28x28"),
    ("cifar10", (28, 28, 1), "cannot turn 3 channels into 1"),
    ("cifar100", (32, 32, 1), "cannot turn 3 channels into 1"),
    ("mnist", (32, 20, 1), "will not shrink 28x28 to 32x20"),
    ("digits", (6, 6, 1), "will not shrink 8x8 to 6x6"),
])
def test_impossible_fits_are_refused_before_reading(no_system_data, name, shape, why):
    for fit_input in (False, True):  # both messages say that --fit-input cannot help
        with pytest.raises(data.DataError) as error:
            data.load(name, image_shape=shape, fit_input=fit_input)
        message = str(error.value)
        assert why in message and "--fit-input cannot" in message, message
        assert "not found" not in message


def test_digits_fit_upscales_straight_to_the_model_size():
    images, labels = sklearn_digits()
    ds = data.load("digits", image_shape=(32, 32, 3), fit_input=True)
    assert ds.train_x.shape[1:] == (32, 32, 3)
    test_rows = np.sort(np.concatenate([np.flatnonzero(labels == c)[4::5] for c in range(10)]))
    upscaled = fit.resize_bilinear(images[test_rows, :, :, None] / 16, (32, 32))
    for channel in range(3):
        np.testing.assert_allclose(ds.test_x[..., channel], upscaled[..., 0], atol=1e-6)
    assert ds.provenance["transforms"][-2:] == [
        "upscaled 8x8 to 32x32 (bilinear, pixel centres aligned)", "grey channel repeated to 3"]


def test_real_fashion_mnist_fitted_to_32x32x3():
    plain = data.load("fashion_mnist")
    fitted = data.load("fashion_mnist", image_shape=(32, 32, 3), fit_input=True)
    assert fitted.train_x.shape == (60000, 32, 32, 3) and fitted.test_x.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(fitted.test_x[:, 2:30, 2:30, 1], plain.test_x[..., 0])
    np.testing.assert_array_equal(fitted.train_y, plain.train_y)
    # One float32 channel behind the three: 60000 x 32 x 32 x 4 bytes, not three times that.
    assert fitted.train_x.base is not None and fitted.train_x.base.nbytes == 60000 * 32 * 32 * 4


# --------------------------------------------------------------------------------- train_images

def test_stratified_subset_size_proportions_and_seed():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    chosen = stratified_subset(labels, 20, seed=0, name="x")
    assert len(chosen) == 20 and len(np.unique(chosen)) == 20
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [10, 6, 3, 1])  # exact shares
    np.testing.assert_array_equal(stratified_subset(labels, 20, seed=0, name="x"), chosen)
    assert not np.array_equal(stratified_subset(labels, 20, seed=1, name="x"), chosen)
    # Shares 6.5, 3.9, 1.95, 0.65: floors 6, 3, 1, 0 and the 3 left over go to the largest
    # remainders (classes 2, 1, 3), not to the first classes.
    odd = stratified_subset(labels, 13, seed=3, name="x")
    np.testing.assert_array_equal(np.bincount(labels[odd], minlength=4), [6, 4, 2, 1])
    np.testing.assert_array_equal(stratified_subset(labels, 100, 0, "x"), np.arange(100))


def test_train_images_subset_of_a_loaded_dataset():
    full = data.load("digits")
    part = data.load("digits", train_images=100, seed=4)
    assert len(part.train_y) == 100 and len(part.test_y) == len(full.test_y)
    rows = stratified_subset(full.train_y, 100, seed=4, name="digits")
    np.testing.assert_array_equal(part.train_x, full.train_x[rows])
    np.testing.assert_array_equal(part.train_y, full.train_y[rows])
    assert np.abs(np.bincount(part.train_y) - 100 * np.bincount(full.train_y) / 1442).max() < 1
    loader._digits_cached.cache_clear()
    np.testing.assert_array_equal(data.load("digits", train_images=100, seed=4).train_y,
                                  part.train_y)
    other = data.load("digits", train_images=100, seed=5)
    assert not np.array_equal(other.train_x, part.train_x)
    assert "training subset of 100 of 1442 images, stratified by class, seed 4" in \
        part.provenance["transforms"]
    assert part.provenance["train_images"] == 100


def test_train_images_more_than_the_training_set(tmp_path, no_system_data):
    write_idx_set(tmp_path / "d", gz=False)
    with pytest.raises(data.DataError, match="--train-images 4 is more than the 3 training"):
        data.load("mnist", tmp_path / "d", train_images=4)
    with pytest.raises(data.DataError, match="at least 1"):
        data.load("mnist", tmp_path / "d", train_images=0)
    assert len(data.load("mnist", tmp_path / "d", train_images=3).train_y) == 3


def test_permuted_subset_uses_the_same_images_as_the_base(tmp_path, no_system_data):
    write_idx_set(tmp_path / "d", gz=False, train_labels=[i % 10 for i in range(5)] * 8)
    plain = data.load("fashion_mnist", tmp_path / "d", train_images=10, seed=2)
    permuted = data.load("fashion_mnist_permuted", tmp_path / "d", train_images=10, seed=2)
    np.testing.assert_array_equal(permuted.train_x, plain.train_x)
    np.testing.assert_array_equal(permuted.train_y,
                                  np.array(catalog.FASHION_PERMUTATION)[plain.train_y])


def test_synthetic_subset():
    ds = data.load("synthetic", train_images=30, seed=2)
    assert len(ds.train_y) == 30 and np.bincount(ds.train_y).tolist() == [3] * 10
    assert ds.provenance["transforms"][-1].startswith("training subset of 30 of 2000")


# ----------------------------------------------------------------------------------- provenance

def test_provenance_of_files_digits_and_synthetic(tmp_path, no_system_data):
    write_idx_set(tmp_path / "d" / "fashion-mnist", gz=True)
    ds = data.load("fashion_mnist", tmp_path / "d", image_shape=(32, 32, 3), fit_input=True,
                   train_images=2, seed=0)
    record = json.loads(json.dumps(ds.provenance))  # JSON-serialisable as it is
    assert record == ds.provenance
    folder = (tmp_path / "d" / "fashion-mnist").resolve()
    assert record["files"] == [str(folder / f"{name}.gz") for name in IDX_NAMES]
    assert all(Path(path).is_absolute() for path in record["files"])
    assert record["origin"] == str(tmp_path / "d" / "fashion-mnist")
    assert record["transforms"] == [
        "training subset of 2 of 3 images, stratified by class, seed 0",
        "zero-padded 28x28 to 32x32 (rows 2 above, 2 below; columns 2 left, 2 right)",
        "grey channel repeated to 3"]
    assert (record["dataset"], record["image_shape"], record["classes"]) == \
        ("fashion_mnist", [32, 32, 3], 10)
    assert (record["train_images"], record["test_images"]) == (2, 2)
    assert data.load("fashion_mnist", tmp_path / "d").provenance["transforms"] == []

    digits_record = data.load("digits").provenance
    assert digits_record["origin"].startswith("scikit-learn ")
    assert digits_record["origin"].endswith(" load_digits")
    assert digits_record["files"][0].endswith("digits.csv.gz")
    assert Path(digits_record["files"][0]).is_file()
    synthetic_record = data.load("synthetic", seed=3).provenance
    assert synthetic_record["origin"] == "synthetic(seed=3)" and synthetic_record["files"] == []
    json.dumps(synthetic_record)


def test_cache_is_keyed_on_files_and_shared_by_requests(tmp_path, no_system_data):
    write_idx_set(tmp_path / "d", gz=False)
    misses = loader._read_files.cache_info().misses
    data.load("mnist", tmp_path / "d")
    data.load("mnist", tmp_path / "d", image_shape=(32, 32, 3), fit_input=True)
    assert loader._read_files.cache_info().misses == misses + 1  # the files were read once
    write_idx_set(tmp_path / "d", gz=False, train_labels=(5, 5, 5))
    os.utime(tmp_path / "d" / IDX_NAMES[1], ns=(1, 1))  # a new mtime, whatever the clock
    assert_labels(data.load("mnist", tmp_path / "d").train_y, [5, 5, 5])


def test_storage_format_is_the_catalog_name():
    assert not hasattr(catalog, "Layout")
    assert all(isinstance(storage, catalog.StorageFormat)
               for spec in catalog.SPECS.values() for storage in spec.formats)


# ---------------------------------------------------------------------------------------- flags

def flags_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="script")
    data.flags.add_flags(parser.add_argument_group("data"))
    return parser


def test_flags_defaults_and_from_args():
    args = flags_parser().parse_args([])
    assert (args.dataset, args.data_dir, args.fit_input, args.train_images) == \
        ("fashion_mnist", None, False, None)
    args = flags_parser().parse_args(["--dataset", "Digits", "--fit-input",
                                      "--train-images", "50"])
    assert args.dataset == "digits"
    ds = data.flags.from_args(args, (32, 32, 3), seed=1)
    assert ds.train_x.shape == (50, 32, 32, 3)
    assert "training subset of 50 of 1442 images, stratified by class, seed 1" in \
        ds.provenance["transforms"]
    assert data.flags.describe(args) == {"dataset": "digits", "data_dir": None,
                                         "fit_input": True, "train_images": 50}
    assert "--fit-input" in flags_parser().format_help()
    relative = flags_parser().parse_args(["--data-dir", "some/where"])
    assert data.flags.describe(relative)["data_dir"] == os.path.abspath("some/where")


@pytest.mark.parametrize("argv, complaint", [
    (["--train-images", "0"], "argument --train-images: must be at least 1, got 0"),
    (["--train-images", "many"], "argument --train-images: expected a whole number"),
    (["--dataset", "imagenet"], "argument --dataset: unknown dataset 'imagenet'"),
])
def test_bad_flag_values_are_one_argparse_line(capsys, argv, complaint):
    with pytest.raises(SystemExit) as stop:
        flags_parser().parse_args(argv)
    assert stop.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and complaint in error_lines[0]
