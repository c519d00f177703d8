"""What each real dataset is, which files hold it, and where people usually keep them."""
from __future__ import annotations

from dataclasses import dataclass

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_PY_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_BIN_FILES = tuple(f"{stem}.bin" for stem in CIFAR10_PY_FILES)


@dataclass(frozen=True)
class StorageFormat:
    """One standard way a dataset's files are stored: a set of files, usually in a known folder."""

    kind: str                  # "idx", "npz", "cifar-py" or "cifar-bin": selects the reader
    description: str           # how messages name it
    files: tuple[str, ...]     # train files first, the test file(s) last
    subdir: str | None = None  # the folder the official archive unpacks into
    gz_optional: bool = False  # each file may also be `<file>.gz`

    def expected(self) -> str:
        names = ", ".join(f"{name}[.gz]" if self.gz_optional else name for name in self.files)
        where = f" in {self.subdir}/" if self.subdir else ""
        return f"{self.description}: {names}{where}"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple[int, int, int]
    classes: int
    folder_names: tuple[str, ...]   # subfolders of a data directory that may hold it
    debian_folder: str              # under /usr/share/datasets
    keras_folders: tuple[str, ...]  # under the Keras cache; "" is the cache itself
    formats: tuple[StorageFormat, ...]
    how_to_get: str
    keras_loader: str               # tf.keras.datasets.<keras_loader>.load_data
    keras_kwargs: tuple[tuple[str, str], ...] = ()


_IDX = StorageFormat("idx", "four IDX files", IDX_FILES, gz_optional=True)
_PUT_IT = "then pass --data-dir DIR or set MP2_DATA=DIR"

SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        name="mnist", image_shape=(28, 28, 1), classes=10,
        folder_names=("mnist",), debian_folder="mnist", keras_folders=("",),
        formats=(_IDX, StorageFormat("npz", "or Keras' archive", ("mnist.npz",))),
        how_to_get=("download the four .gz files (e.g. from "
                    "https://storage.googleapis.com/cvdf-datasets/mnist/) into DIR/mnist/, or "
                    "Keras' https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz "
                    f"into DIR/; {_PUT_IT}"),
        keras_loader="mnist"),
    DatasetSpec(
        name="fashion_mnist", image_shape=(28, 28, 1), classes=10,
        folder_names=("fashion-mnist", "fashion_mnist"), debian_folder="fashion-mnist",
        keras_folders=("fashion-mnist",), formats=(_IDX,),
        how_to_get=("on Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs them in "
                    "/usr/share/datasets/fashion-mnist/); otherwise download the four .gz files "
                    "from https://github.com/zalandoresearch/fashion-mnist into "
                    f"DIR/fashion-mnist/; {_PUT_IT}"),
        keras_loader="fashion_mnist"),
    DatasetSpec(
        name="cifar10", image_shape=(32, 32, 3), classes=10,
        folder_names=("cifar10", "cifar-10"), debian_folder="cifar10",
        keras_folders=("cifar-10-batches-py-target", ""),
        formats=(StorageFormat("cifar-py", "python version", CIFAR10_PY_FILES, "cifar-10-batches-py"),
                 StorageFormat("cifar-bin", "or binary version", CIFAR10_BIN_FILES,
                        "cifar-10-batches-bin")),
        how_to_get=("download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (or "
                    "cifar-10-binary.tar.gz) and unpack it in DIR, which gives "
                    f"DIR/cifar-10-batches-py/; {_PUT_IT}"),
        keras_loader="cifar10"),
    DatasetSpec(
        name="cifar100", image_shape=(32, 32, 3), classes=100,
        folder_names=("cifar100", "cifar-100"), debian_folder="cifar100",
        keras_folders=("cifar-100-python-target", ""),
        formats=(StorageFormat("cifar-py", "python version", ("train", "test"), "cifar-100-python"),
                 StorageFormat("cifar-bin", "or binary version", ("train.bin", "test.bin"),
                        "cifar-100-binary")),
        how_to_get=("download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (or "
                    "cifar-100-binary.tar.gz) and unpack it in DIR, which gives "
                    f"DIR/cifar-100-python/; {_PUT_IT}"),
        keras_loader="cifar100", keras_kwargs=(("label_mode", "fine"),)),
)}


# A new task on known images: Fashion-MNIST with every label moved to another class by
# label -> (3 * label + 1) % 10. No class keeps its label (3l + 1 = l has no solution mod 10),
# so a predictor trained on Fashion-MNIST meets the same images with other classes.
FASHION_PERMUTATION: tuple[int, ...] = tuple((3 * label + 1) % 10 for label in range(10))


@dataclass(frozen=True)
class Relabelled:
    """A file dataset whose labels (train and test alike) are mapped through a fixed permutation."""

    name: str
    base: str                       # the entry of SPECS whose files it reads
    permutation: tuple[int, ...]    # new label of old label i is permutation[i]


RELABELLED: dict[str, Relabelled] = {entry.name: entry for entry in (
    Relabelled("fashion_mnist_permuted", "fashion_mnist", FASHION_PERMUTATION),
)}

# scikit-learn's 8x8 handwritten digits (UCI optdigits test set, grey levels 0..16).
DIGITS_NATIVE_SHAPE = (8, 8, 1)
DIGITS_DEFAULT_SHAPE = (28, 28, 1)  # offered like MNIST, so the MNIST-sized models take it as is
DIGITS_LEVELS = 16
DIGITS_CLASSES = 10
DIGITS_TEST_EVERY = 5  # within each class, every 5th image (file order) is a test image: 80/20
