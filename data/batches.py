"""How training data is dealt out to workers, and mixup on a worker's batch."""
from __future__ import annotations

import numpy as np

from data.errors import DataError


class Schedule:
    """The reference's partitioning: per epoch one permutation of the training set, cut into
    global mini-batches of workers * worker_batch images; worker i takes slice i of each.

    The permutation depends only on (seed, epoch), so the PS and every worker process compute
    the same batches without exchanging indices. The tail that does not fill a global batch is
    skipped for that epoch (a different tail every epoch).
    """

    def __init__(self, n_train: int, workers: int, worker_batch: int, seed: int):
        if workers < 1 or worker_batch < 1:
            raise DataError(f"need at least one worker and one image per worker batch, got "
                            f"workers={workers}, worker_batch={worker_batch}")
        if seed < 0:
            raise DataError(f"the data seed must be >= 0, got {seed}")
        self.n_train = int(n_train)
        self.workers = int(workers)
        self.worker_batch = int(worker_batch)
        self.seed = int(seed)
        self.global_batch = self.workers * self.worker_batch
        self.steps_per_epoch = self.n_train // self.global_batch
        if self.steps_per_epoch == 0:
            raise DataError(f"the global batch ({self.workers} workers x {self.worker_batch} "
                            f"images = {self.global_batch}) is larger than the training data "
                            f"({self.n_train} images): use a smaller batch or fewer workers")
        self._permutation: tuple[int, np.ndarray] | None = None  # (epoch, order), last one used

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the training set in `epoch` (read-only)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        cached = self._permutation
        if cached is None or cached[0] != epoch:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.n_train)
            order.flags.writeable = False
            cached = self._permutation = (epoch, order)
        return cached[1]

    def global_indices(self, epoch: int, step: int) -> np.ndarray:
        """Indices of the global mini-batch of `step` in `epoch`: global_batch of them."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        start = step * self.global_batch
        return self.permutation(epoch)[start:start + self.global_batch].copy()

    def worker_indices(self, epoch: int, step: int, worker: int) -> np.ndarray:
        """Slice `worker` of that global mini-batch: worker_batch indices."""
        if not 0 <= worker < self.workers:
            raise IndexError(f"worker {worker} outside 0..{self.workers - 1}")
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        start = step * self.global_batch + worker * self.worker_batch
        return self.permutation(epoch)[start:start + self.worker_batch].copy()

    def __repr__(self) -> str:
        return (f"Schedule(n_train={self.n_train}, workers={self.workers}, "
                f"worker_batch={self.worker_batch}, seed={self.seed}, "
                f"steps_per_epoch={self.steps_per_epoch})")


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    """float32 [B, classes] one-hot rows for integer labels [B]."""
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        # Checked because numpy would wrap a negative label round to the last class silently.
        raise DataError(f"labels range from {labels.min()} to {labels.max()} but there are "
                        f"{classes} classes (0..{classes - 1})")
    return np.eye(classes, dtype=np.float32)[labels]


def mixup(x: np.ndarray, y: np.ndarray, classes: int, alpha: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mix the batch with a shuffled copy of itself by one lambda ~ Beta(alpha, alpha), as the
    reference does; returns float32 images and soft labels [B, classes] (rows sum to 1).

    alpha <= 0 turns mixing off: the images unchanged and plain one-hot labels.
    """
    images = np.asarray(x, dtype=np.float32)
    targets = one_hot(y, classes)
    if len(images) != len(targets):
        raise DataError(f"mixup got {len(images)} images but {len(targets)} labels")
    if alpha <= 0:
        return images, targets
    lam = np.float32(rng.beta(alpha, alpha))
    partner = rng.permutation(len(images))
    mixed_images = lam * images + (1 - lam) * images[partner]
    mixed_targets = lam * targets + (1 - lam) * targets[partner]
    return mixed_images.astype(np.float32, copy=False), mixed_targets.astype(np.float32, copy=False)
