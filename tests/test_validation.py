"""The validation split: never trained on, never the test set, the same for every method; and the epoch
it selects (the test accuracy reported is the one at the best validation epoch, or the final one)."""
from __future__ import annotations


import numpy as np
import pytest

import data
from data import validation
from runtime import flags

pytestmark = pytest.mark.unit


def test_the_earlier_of_equal_validation_accuracies_is_selected():
    assert validation.select_epoch([0.5, 0.7, 0.6, 0.7, 0.2]) == 1
    assert validation.select_epoch([0.9]) == 0
    assert validation.select_epoch([0.1, 0.3, 0.3000001]) == 2
    with pytest.raises(ValueError):
        validation.select_epoch([])


def test_no_worker_ever_trains_on_a_validation_image_and_the_test_set_is_untouched():
    """Real images (scikit-learn's digits): the held-out rows are exactly the split's; the schedule's indices
    of every worker, step and epoch, mapped back to the original rows, never touch them."""
    whole = data.load("digits")
    held_out = validation.hold_out(whole, None)
    n = len(whole.train_y)
    kept, held = validation.split_indices(n, validation.default_images(n))
    assert len(held) == round(n / validation.FRACTION) and len(set(kept) | set(held)) == n
    np.testing.assert_array_equal(held_out.val_x, whole.train_x[held])
    np.testing.assert_array_equal(held_out.train_x, whole.train_x[kept])
    np.testing.assert_array_equal(held_out.test_x, whole.test_x)  # the test set is never cut
    np.testing.assert_array_equal(held_out.test_y, whole.test_y)
    schedule = data.Schedule(len(held_out.train_y), workers=4, worker_batch=25, seed=3)
    trained = {int(kept[i]) for epoch in range(3) for step in range(schedule.steps_per_epoch)
               for w in range(4) for i in schedule.worker_indices(epoch, step, w)}
    assert trained and not trained & set(held.tolist())
    assert held_out.provenance["validation_images"] == len(held)
    assert "never trained on" in held_out.provenance["transforms"][-1]


def test_the_split_is_fixed_whatever_the_runs_seed_and_proportionate():
    a, b = validation.split_indices(60000, 5000), validation.split_indices(60000, 5000)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert validation.default_images(60000) == 5000 and validation.default_images(10000) == 833
    with pytest.raises(data.DataError, match="must be at least 0 and below the 10 training images"):
        validation.split_indices(10, 10)


def test_synthetic_validation_images_are_generated_and_leave_training_and_test_as_they_were():
    plain = data.synthetic(seed=4)
    split = validation.hold_out(plain, 50)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(split, name), getattr(plain, name))
    assert split.val_x.shape == (50, 28, 28, 1) and len(split.val_y) == 50
    assert not any((split.val_x[i] == plain.train_x).all(axis=(1, 2, 3)).any() for i in range(50))


def test_the_flag_sets_the_split_and_the_run_configuration_names_it():
    args = flags.ps_parser("").parse_args(["--dataset", "synthetic", "--validation-images", "0"])
    dataset, model = flags.load_data_and_model(args)
    assert len(dataset.val_y) == 0 and len(dataset.train_y) == 2000
    args = flags.ps_parser("").parse_args(["--dataset", "digits"])
    dataset, model = flags.load_data_and_model(args)
    assert len(dataset.val_y) == validation.default_images(len(dataset.train_y) + len(dataset.val_y))
