"""What the training stage writes to --out: the resumable state, report.json and report.csv.

last.npz (pickle-free, via npzio), written after each training epoch (not for the untrained epoch 0):
the predictor's weights ("w/<name>"), the optimizer state ("adam/..."), and as JSON metadata the
config, the epoch reached and the rows of the report so far. Every epoch's randomness is drawn from
(seed, epoch), so the epoch and the seed fix where the random streams continue.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

import npzio

LAST = "last.npz"
BEST = "predictor.npz"
REPORT_JSON = "report.json"
REPORT_CSV = "report.csv"
STATE_FORMAT = "mp2-train-stage-state"
# Config entries a resumed run may change: everything else must be as it was.
MAY_CHANGE = ("epochs", "threads")
# Config entries a resumed run takes from the saved one when it does not name them (--resume excludes --init).
INHERITED = ("init", "lr_warmup")
# val_*: held-out snapshots on the validation images (the selection); test_*: on the test images (reported only).
CSV_COLUMNS = ("epoch", "train_loss", "val_assembled_acc", "val_own_acc", "val_gap",
               "test_assembled_acc", "test_own_acc", "test_gap", "seconds")


# The figure that chooses the best epoch: held-out snapshots on the validation images, never the test ones.
SELECTED_ON = "val_assembled_acc"


class ResumeError(Exception):
    pass


def improves(row: dict, best: dict | None) -> bool:
    """Whether the epoch of `row` becomes the kept predictor: a trained epoch (epoch 0 is the
    untrained control) whose validation figure beats the best so far."""
    return row["epoch"] >= 1 and (best is None or row[SELECTED_ON] > best[SELECTED_ON])


def save_state(out: Path, weights: dict[str, np.ndarray], adam_state: dict[str, np.ndarray],
               config: dict, epoch: int, rows: list[dict], best: dict | None) -> None:
    arrays = {f"w/{k}": v for k, v in weights.items()}
    arrays.update(adam_state)
    meta = {"format": STATE_FORMAT, "config": config, "epoch": epoch, "rows": rows, "best": best}
    npzio.write(out / LAST, arrays, meta)


def load_state(out: Path, config: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """(predictor weights, optimizer state, meta) of <out>/last.npz, refusing another configuration."""
    path = out / LAST
    if not path.exists():
        raise ResumeError(f"--resume: no {LAST} in {out} (nothing to resume; drop --resume)")
    try:
        arrays, meta = npzio.read(path)
    except npzio.NpzError as e:
        raise ResumeError(f"--resume: {e}; "
                          f"start afresh without --resume") from None
    if (meta or {}).get("format") != STATE_FORMAT:
        raise ResumeError(f"--resume: {path} is not a training-stage state file")
    changed = differences(meta["config"], config)
    if changed:
        raise ResumeError(f"--resume: {path} was trained with other settings: {'; '.join(changed)} "
                          f"(use the same flags, or start afresh without --resume)")
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}
    adam = {k: v for k, v in arrays.items() if k.startswith("adam/")}
    return weights, adam, meta


def differences(saved: dict, now: dict) -> list[str]:
    keys = sorted((set(saved) | set(now)) - set(MAY_CHANGE) - {k for k in INHERITED if now.get(k) is None})
    return [f"{_flag(k)} was {saved.get(k)!r}, now {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


# Config entries that are not flags, named for the message.
_LABELS = {"snapshot_count": "the number of snapshots found", "fingerprint": "the model layout",
           "heldout_count": "the number of held-out snapshots"}


def _flag(key: str) -> str:
    return _LABELS.get(key, "--" + key.replace("_", "-"))


def write_report(out: Path, report: dict) -> None:
    npzio.write_json(out / REPORT_JSON, report)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
    npzio.write_bytes(out / REPORT_CSV, buf.getvalue().encode())
