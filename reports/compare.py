"""Compare runs of different methods on the same model and data."""
from __future__ import annotations

import json
from pathlib import Path

from helpers import provenance
from reports import accuracy, cost

COLUMNS = [
    ("method", "method", "{}"),
    ("test_acc", accuracy.HEADER, "{:.4f}"),
    ("final_test_acc", "final test acc", "{:.4f}"),
    ("bytes_pushed_total", "pushed (MB)", "{:.1f}"),
    ("bytes_pulled_total", "pulled (MB)", "{:.1f}"),
    ("bytes_pushed_per_step", "pushed/step/worker (KB)", "{:.1f}"),
    ("bytes_pulled_per_step", "pulled/step/worker (KB)", "{:.1f}"),
    ("pushed_vs_baseline", "pushed vs baseline", "{:.2%}"),
    ("wall_seconds", "wall (s)", "{:.1f}"),
]


def compare(summaries: dict[str, dict], baseline: str = "baseline") -> dict:
    """Rows of the comparison, with per-step traffic and ratios against the baseline run."""
    rows = []
    base = summaries.get(baseline)
    for name, s in summaries.items():
        per_worker_steps = s["steps"] * s["workers"]
        row = {
            "run": name, "method": s["method"], "model": s["model"], "dataset": s["dataset"],
            "workers": s["workers"], "epochs": s["epochs"], "steps": s["steps"],
            **accuracy.fields(s), "final_test_acc": s["final_test_acc"],
            "best_val_epoch": s.get("best_val_epoch"), "test_acc_by_epoch": s["test_acc_by_epoch"],
            "bytes_pushed_total": s["bytes_pushed_total"], "bytes_pulled_total": s["bytes_pulled_total"],
            "bytes_pushed_per_step": s["bytes_pushed_total"] / per_worker_steps,
            "bytes_pulled_per_step": s["bytes_pulled_total"] / per_worker_steps,
            "wall_seconds": s["wall_seconds"],
            # summary.json keeps the PS's input files (the mp2 predictor, resolved) and the method's flags apart.
            "predictor": ((s.get("ps_inputs") or {}).get("predictor") or (s.get("method_options") or {}).get("predictor")
                          or s.get("predictor")),
            "pushed_layers": s.get("pushed_layers"), "data": s.get("data"),
        }
        if base:
            row["pushed_vs_baseline"] = s["bytes_pushed_total"] / base["bytes_pushed_total"]
            row["traffic_vs_baseline"] = (s["bytes_pushed_total"] + s["bytes_pulled_total"]) / (
                base["bytes_pushed_total"] + base["bytes_pulled_total"])
            row["accuracy_gap_vs_baseline"] = row["test_acc"] - accuracy.honest_accuracy(base)[0]
            row["wall_vs_baseline"] = s["wall_seconds"] / base["wall_seconds"]
        rows.append(row)
    return {"rows": rows, "same_data": same_data(summaries)}


def same_data(summaries: dict[str, dict]) -> bool:
    """Whether every run trained and tested on the same images (by their data provenance, where recorded)."""
    records = [s.get("data") for s in summaries.values() if s.get("data") is not None]
    return all(r == records[0] for r in records)


def markdown(comparison: dict, notes: list[str] | None = None) -> str:
    rows = comparison["rows"]
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    lines = [head, rule]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            value = r.get(key)
            if value is None:
                cells.append("—")
                continue
            if key.startswith("bytes_") and key.endswith("_total"):
                value = value / 1e6
            elif key.startswith("bytes_"):
                value = value / 1e3
            cells.append(fmt.format(value) + (accuracy.mark(r["test_acc_kind"]) if key == "test_acc" else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if note := accuracy.footnote(r["test_acc_kind"] for r in rows):
        lines += ["", note]
    first = rows[0]
    title = f"# {first['model']} on {first['dataset']}, {first['workers']} workers, {first['epochs']} epochs\n"
    extra = "".join(f"\n- {n}" for n in notes or [])
    return title + "\n" + "\n".join(lines) + "\n" + (extra + "\n" if extra else "")


def write_comparison(out: Path, summaries: dict[str, dict], notes: list[str] | None = None,
                     costs: list[dict] | None = None, origin: dict | None = None) -> dict:
    """comparison.json, comparison.md and (with matplotlib) comparison.png in `out`; `costs`: the whole
    cost of each route to a model (reports.cost), tabled after the runs; `origin` (provenance.record())
    goes into the JSON as its provenance."""
    out = Path(out)
    result = compare(summaries)
    result["notes"] = list(notes or [])
    if costs:
        result["whole_cost"] = costs
    if origin is not None:
        result["provenance"] = origin
    if not result["same_data"]:
        result["notes"].append("the runs did not use the same data (see each row's data): the accuracies do not compare")
    # Comparisons get committed: the predictor's path and the notes' name no absolute path of this machine.
    result = json.loads(provenance.portable(json.dumps(result), out))
    (out / "comparison.json").write_text(json.dumps(result, indent=1) + "\n")
    runs = markdown(result, result["notes"])
    if costs:  # the whole cost leads: a saving that an earlier run paid for must not read as one
        title, rest = runs.split("\n", 1)
        runs = f"{title}\n\n{cost.markdown(costs)}\n## The runs\n{rest}"
    (out / "comparison.md").write_text(runs)
    _plot(out / "comparison.png", result)
    return result


def _plot(path: Path, comparison: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the JSON and Markdown carry the same figures
    rows = comparison["rows"]
    fig, (acc, traffic) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        epochs = range(1, len(r["test_acc_by_epoch"]) + 1)
        acc.plot(epochs, r["test_acc_by_epoch"], marker="o", label=r["method"])
    acc.set(xlabel="epoch", ylabel="test accuracy", title="accuracy")
    acc.grid(alpha=0.3)
    acc.legend()
    names = [r["method"] for r in rows]
    pushed = [r["bytes_pushed_total"] / 1e6 for r in rows]
    pulled = [r["bytes_pulled_total"] / 1e6 for r in rows]
    x = range(len(rows))
    traffic.bar([i - 0.2 for i in x], pushed, width=0.4, label="pushed")
    traffic.bar([i + 0.2 for i in x], pulled, width=0.4, label="pulled")
    traffic.set_xticks(list(x), names)
    traffic.set(ylabel="MB (all workers)", title="traffic")
    traffic.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
