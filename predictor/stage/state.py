"""What the training stage writes to --out: the resumable state, report.json and report.csv, and when
an --out that holds a predictor may be written to at all.

last.npz (pickle-free, via npzio), written after each training epoch (not for the untrained epoch 0):
the predictor's weights ("w/<name>"), the optimizer state ("adam/..."), and as JSON metadata the
config, the epoch reached and the rows of the report so far. Every epoch's randomness is drawn from
(seed, epoch), so the epoch and the seed fix where the random streams continue.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from helpers import npzio

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


# One training's files: they describe each other, so they are set aside and put back together.
TRAINING_FILES = (BEST, REPORT_JSON, REPORT_CSV, LAST)


class ResumeError(Exception):
    pass


def improves(row: dict, best: dict | None) -> bool:
    """Whether the epoch of `row` becomes the kept predictor: a trained epoch (epoch 0 is the
    untrained control) whose validation figure beats the best so far."""
    return row["epoch"] >= 1 and (best is None or row[SELECTED_ON] > best[SELECTED_ON])


class OutError(Exception):
    """An --out this run cannot use, or could use only by losing what it holds (one line for the user)."""


def prepare_out(out: Path, *, resume: bool, fresh: bool, evaluate_only: bool) -> None:
    """Create --out (a resumed run's must exist already), refusing a fresh run that would replace or
    contradict the predictor it holds: only --resume and --fresh write there."""
    if out.exists() and not out.is_dir():
        raise OutError(f"--out {out} is a file, not a directory: choose another --out")
    if (out / BEST).exists() and not resume:
        if evaluate_only:
            raise OutError(f"--epochs 0 only evaluates, and its report would replace {out / REPORT_JSON}, which "
                           f"describes the {BEST} beside it: give the evaluation another --out "
                           f"(with --init {out} to evaluate that predictor)")
        if not fresh:
            raise OutError(f"--out {out} already holds a trained predictor ({BEST}{_describe(out / BEST)}): "
                           f"--resume continues its training, --fresh keeps it aside (in {out}/replaced-<time>/) "
                           f"and trains a new one, or choose another --out")
    if not resume:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutError(f"cannot create --out {out} ({e.strerror or e}): choose a directory you can write") from None


def _describe(path: Path) -> str:
    """', epoch 3, held-out assembled accuracy 0.8765 on validation images' of a predictor, if readable."""
    try:
        meta = npzio.read(path)[1] or {}
    except npzio.NpzError:
        return ""
    epoch, acc = meta.get("trained_epochs"), meta.get("val_assembled_acc")
    if not isinstance(epoch, int) or not isinstance(acc, float):
        return ""
    return f", epoch {epoch}, held-out assembled accuracy {acc:.4f} on validation images"


def set_aside(out: Path) -> Path | None:
    """--fresh: move the previous training's files into out/replaced-<time>/, as a fresh PS run does with an
    earlier run's records; that folder, or None when there was nothing to move."""
    return npzio.set_aside(out, [out / name for name in TRAINING_FILES])


def put_back(out: Path, aside: Path) -> None:
    """Undo set_aside() for a run that ends before its first trained epoch: its own files give way."""
    for name in TRAINING_FILES:
        if (aside / name).exists():
            os.replace(aside / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)
    aside.rmdir()


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
