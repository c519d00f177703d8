"""The paper's own models through the pipeline (results/models): each attempt's baseline and MP² runs and
its predictor, side by side.

An attempt is a folder of the study holding the PS's summary.json of its MP² run (mp2-summary.json) and
the predictor's report.json (predictor-report.json); its baseline's summary.json (baseline-summary.json)
is in the folder ATTEMPTS names, shared by attempts trained on the same collection.

    python -m reports models results/models
"""
from __future__ import annotations

from pathlib import Path

from helpers import npzio
from reports import accuracy
from reports.readme import ReportError, read_json, write_blocks

STUDY = "models"
# folder -> (label, folder holding its baseline), in the order the attempts were made.
ATTEMPTS = {
    "resnet18": ("ResNet-18, faithful (push front)", "resnet18"),
    "resnet18-front-head": ("ResNet-18, push front+head", "resnet18"),
    "resnet18-front-head-7ep": ("ResNet-18, push front+head, predictor 7 epochs", "resnet18"),
    # A re-collected baseline (the same command and curve as resnet18's); predictors trained longer.
    "resnet18b-rank1": ("ResNet-18, faithful (push front, head rank 1), predictor 5 epochs", "resnet18b"),
    "resnet18b-rank8": ("ResNet-18, push front, head rank 8, predictor 5 epochs", "resnet18b"),
}


def attempt(base: dict, mp2: dict, report: dict, folder: str, label: str) -> dict:
    """One attempt's figures from its baseline's and MP² run's summaries and its predictor's report."""
    if base["data"] != mp2["data"] or base["epochs"] != mp2["epochs"]:
        raise ReportError(f"{folder}: its MP² run and its baseline did not train on the same data for the same epochs")
    best = report["best"]
    base_acc, mp2_acc = accuracy.fields(base, "baseline_"), accuracy.fields(mp2, "mp2_")
    return {
        "attempt": folder, "label": label, "model": mp2["model"], "dataset": mp2["dataset"],
        "train_images": mp2["data"]["train_images"], "test_images": mp2["data"]["test_images"],
        "transforms": mp2["data"]["transforms"], "workers": mp2["workers"], "epochs": mp2["epochs"],
        "pushed_layers": mp2["pushed_layers"], "pushed_share": mp2["pushed_params"] / mp2["total_params"],
        **base_acc, **mp2_acc, "gap_points": 100 * (base_acc["baseline_test_acc"] - mp2_acc["mp2_test_acc"]),
        "baseline_test_acc_by_epoch": base["test_acc_by_epoch"], "mp2_test_acc_by_epoch": mp2["test_acc_by_epoch"],
        "baseline_bytes_pushed": base["bytes_pushed_total"], "baseline_bytes_pulled": base["bytes_pulled_total"],
        "mp2_bytes_pushed": mp2["bytes_pushed_total"], "mp2_bytes_pulled": mp2["bytes_pulled_total"],
        "pushed_vs_baseline": mp2["bytes_pushed_total"] / base["bytes_pushed_total"],
        "baseline_wall_seconds": base["wall_seconds"], "mp2_wall_seconds": mp2["wall_seconds"],
        "snapshots": base["snapshots"], "predictor_train_snapshots": report["train_snapshots"],
        "predictor_heldout_snapshots": len(report["heldout"]), "predictor_epochs": report["rows"][-1]["epoch"],
        "predictor_head_rank": report["config"].get("head_rank", 1),
        "predictor_best_epoch": best["epoch"], "predictor_test_assembled_acc": best["test_assembled_acc"],
        "predictor_test_own_acc": best["test_own_acc"], "predictor_val_assembled_acc": best["val_assembled_acc"],
        "predictor_test_assembled_by_epoch": [r["test_assembled_acc"] for r in report["rows"]],
        "predictor_seconds": sum(r["seconds"] for r in report["rows"]),
        "baseline_folder": base.get("_folder"),
    }


def read_attempts(study: Path) -> list[dict]:
    """Every attempt of ATTEMPTS whose three records are in `study`; ReportError when none is."""
    rows = []
    for folder, (label, baseline_folder) in ATTEMPTS.items():
        paths = [study / baseline_folder / "baseline-summary.json", study / folder / "mp2-summary.json",
                 study / folder / "predictor-report.json"]
        if all(p.exists() for p in paths):
            base, mp2, report = (read_json(p) for p in paths)
            rows.append(attempt({**base, "_folder": baseline_folder}, mp2, report, folder, label))
    if not rows:
        raise ReportError(f"{study} holds no attempt ({', '.join(ATTEMPTS)}: each a folder with mp2-summary.json and "
                          "predictor-report.json, its baseline's folder with baseline-summary.json)")
    return rows


def attempts_table(rows: list[dict]) -> str:
    lines = [f"| attempt | pushed share | baseline {accuracy.HEADER} | MP² {accuracy.HEADER} | gap (points) "
             "| pushed MB: baseline / MP² | pulled MB (each) | predictor: held-out assembled vs own (test) "
             "| wall s: baseline / MP² |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['pushed_share']:.2%} "
            f"| {r['baseline_test_acc']:.4f}{accuracy.mark(r['baseline_test_acc_kind'])} "
            f"| {r['mp2_test_acc']:.4f}{accuracy.mark(r['mp2_test_acc_kind'])} "
            f"| {r['gap_points']:.2f} | {r['baseline_bytes_pushed'] / 1e6:,.0f} / {r['mp2_bytes_pushed'] / 1e6:,.0f} "
            f"| {r['mp2_bytes_pulled'] / 1e6:,.0f} | {r['predictor_test_assembled_acc']:.4f} vs "
            f"{r['predictor_test_own_acc']:.4f} (epoch {r['predictor_best_epoch']} of {r['predictor_epochs']}) "
            f"| {r['baseline_wall_seconds']:.0f} / {r['mp2_wall_seconds']:.0f} |")
    return accuracy.with_footnote(lines, (r[f"{side}_test_acc_kind"] for r in rows for side in ("baseline", "mp2")))


def _curve_table(first: str, header: list[str], named_curves: list[tuple[str, list[float]]]) -> str:
    lines = [f"| {first} | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for name, curve in named_curves:
        cells = [f"{v:.4f}" for v in curve] + [""] * (len(header) - len(curve))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def epochs_table(rows: list[dict]) -> str:
    """Test accuracy by epoch: each distinct baseline collection once, then every attempt's MP² run."""
    baselines = {}
    for r in rows:
        baselines.setdefault(r["baseline_folder"], r["baseline_test_acc_by_epoch"])
    curves = [(f"baseline (`{folder}`)", curve) for folder, curve in baselines.items()]
    curves += [(f"MP², {r['label']}", r["mp2_test_acc_by_epoch"]) for r in rows]
    longest = max(len(c) for _, c in curves)
    return _curve_table("epoch", [str(e) for e in range(1, longest + 1)], curves)


def predictor_table(rows: list[dict]) -> str:
    """The predictor's held-out assembled test accuracy per epoch (epoch 0: untrained), and its snapshots' own."""
    curves = [(f"{r['label']} (own {r['predictor_test_own_acc']:.4f})", r["predictor_test_assembled_by_epoch"]) for r in rows]
    longest = max(len(c) for _, c in curves)
    return _curve_table("attempt", [str(e) for e in range(longest)], curves)


def report(study: Path, readme: Path | None = None) -> list[dict]:
    """results.json and the README's three tables (attempts, epochs, predictor) of the attempts in `study`."""
    study = Path(study)
    rows = read_attempts(study)
    npzio.write_json(study / "results.json", {"attempts": rows})
    write_blocks(readme or study / "README.md", STUDY, {
        "attempts": attempts_table(rows), "epochs": epochs_table(rows), "predictor": predictor_table(rows)})
    return rows
