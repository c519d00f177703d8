"""Hardening: macro metrics, paths from any directory, a dead worker, ports, npz files, bad flags and outputs."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.metrics import classification_report


def test_macro_averages_cover_classes_that_are_only_predicted():
    # labels hold classes 0 and 1; class 2 is predicted once but never occurs.
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 2, 1, 1])
    report = classification_report(labels, predictions, classes=4)
    # per class (0, 1, 2): precision 1, 1, 0; recall 1/2, 1, 0; F1 2/3, 1, 0. Class 3 appears nowhere.
    assert report["accuracy"] == pytest.approx(3 / 4)
    assert report["precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert report["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert report["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_macro_averages_of_a_class_never_predicted():
    labels = np.array([0, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1])
    report = classification_report(labels, predictions, classes=3)
    # precision 1, 1/3, 0; recall 1, 1, 0; F1 1, 1/2, 0
    assert report["precision"] == pytest.approx((1 + 1 / 3) / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(1.5 / 3)
