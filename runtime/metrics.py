"""Classification metrics from predictions, as the reference reports them (macro averages)."""
from __future__ import annotations

import numpy as np


def classification_report(labels: np.ndarray, predictions: np.ndarray, classes: int) -> dict[str, float]:
    """Accuracy and macro precision, recall and F1 over every class in the labels or the predictions.

    A class never predicted has precision 0 and one predicted but absent from the labels recall 0
    (scikit-learn's macro average, over the union of both).
    """
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(classes), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros(classes), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(classes), where=denom > 0)
    present = (actual > 0) | (predicted > 0)
    return {
        "accuracy": float(true_pos.sum() / max(1, len(labels))),
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
    }
