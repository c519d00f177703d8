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


def epoch_record(epoch: int, test: dict[str, float], reports: list[dict], phases: dict[str, int], wall: float) -> dict:
    """One line of metrics.jsonl: the global model's test figures and the workers' epoch, summed or averaged."""
    return {
        "epoch": epoch,
        "test_acc": test["accuracy"], "precision": test["precision"], "recall": test["recall"], "f1": test["f1"],
        "loss": float(np.mean([r["loss"] for r in reports])),
        "train_acc": float(np.mean([r["train_acc"] for r in reports])),
        "bytes_pushed": int(sum(r["bytes_pushed"] for r in reports)),
        "bytes_pulled": int(sum(r["bytes_pulled"] for r in reports)),
        "comm_seconds": float(np.mean([r["comm_seconds"] for r in reports])),
        "step_seconds": float(np.mean([r["step_seconds"] for r in reports])),
        "phases": phases, "wall_seconds": wall,
        "workers": reports,
    }


def finite_json(value):
    """`value` with every non-finite float replaced by None, so the JSON written is valid JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
