"""Gather the runs' records kept beside this file into results.json and a markdown table.

    python results/models/collect.py

Each attempt is a folder here holding the PS's summary.json of its runs (baseline-summary.json,
mp2-summary.json) and the predictor's report.json (predictor-report.json), copied from runs/ and
predictors/ after the run. An attempt without its own baseline names the folder whose baseline it shares.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
# folder -> (label, folder holding its baseline)
ATTEMPTS = {
    "resnet18": ("ResNet-18, faithful (push front)", "resnet18"),
    "resnet18-front-head": ("ResNet-18, push front+head", "resnet18"),
    "resnet18-front-head-7ep": ("ResNet-18, push front+head, predictor 7 epochs", "resnet18"),
    # Re-collected baseline (the same command and figures as resnet18's), predictors trained longer.
    "resnet18b-rank1": ("ResNet-18, faithful (push front, head rank 1), predictor 5 epochs", "resnet18b"),
    "resnet18b-rank8": ("ResNet-18, push front, head rank 8, predictor 5 epochs", "resnet18b"),
}


def attempt(folder: str, label: str, baseline_folder: str) -> dict | None:
    paths = {"baseline": HERE / baseline_folder / "baseline-summary.json", "mp2": HERE / folder / "mp2-summary.json",
             "predictor": HERE / folder / "predictor-report.json"}
    if not all(p.exists() for p in paths.values()):
        return None
    base, mp2, report = (json.loads(p.read_text()) for p in paths.values())
    assert base["data"] == mp2["data"] and base["epochs"] == mp2["epochs"], f"{folder}: not the same data and epochs"
    best = report["best"]
    return {
        "attempt": folder, "label": label, "model": mp2["model"], "dataset": mp2["dataset"],
        "train_images": mp2["data"]["train_images"], "test_images": mp2["data"]["test_images"],
        "transforms": mp2["data"]["transforms"], "workers": mp2["workers"], "epochs": mp2["epochs"],
        "pushed_layers": mp2["pushed_layers"], "pushed_share": mp2["pushed_params"] / mp2["total_params"],
        "baseline_best_test_acc": base["best_test_acc"], "mp2_best_test_acc": mp2["best_test_acc"],
        "gap_points": 100 * (base["best_test_acc"] - mp2["best_test_acc"]),
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
    }


def main() -> None:
    rows = [r for folder, (label, base) in ATTEMPTS.items() if (r := attempt(folder, label, base))]
    (HERE / "results.json").write_text(json.dumps({"attempts": rows}, indent=1) + "\n")
    print("| attempt | pushed share | baseline best | MP² best | gap (points) | pushed MB: baseline / MP² "
          "| pulled MB (each) | predictor: held-out assembled vs own (test) | wall s: baseline / MP² |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['pushed_share']:.2%} | {r['baseline_best_test_acc']:.4f} | {r['mp2_best_test_acc']:.4f} "
              f"| {r['gap_points']:.2f} | {r['baseline_bytes_pushed'] / 1e6:,.0f} / {r['mp2_bytes_pushed'] / 1e6:,.0f} "
              f"| {r['mp2_bytes_pulled'] / 1e6:,.0f} | {r['predictor_test_assembled_acc']:.4f} vs {r['predictor_test_own_acc']:.4f} "
              f"(epoch {r['predictor_best_epoch']} of {r['predictor_epochs']}) "
              f"| {r['baseline_wall_seconds']:.0f} / {r['mp2_wall_seconds']:.0f} |")


if __name__ == "__main__":
    main()
