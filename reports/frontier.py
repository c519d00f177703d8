"""The accuracy-for-bytes frontier of a grid of runs (benchmarks/frontier.py): per setting, over its
seeds, the best test accuracy (mean, std, min–max), the bytes up and down of every step, their share
of the baseline's, the wall time, and what else its cost counts (a prior run and predictor training).

A run root holds ROOT/LABEL/seedN/ per run: the run's own files (summary.json once it finished),
frontier-run.json (the setting's flags, the commit, and any prior run it used), frontier-failed.json
for a run that failed, and mp2_local.log.

    python -m reports frontier runs/frontier --out results/frontier
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

import npzio
import provenance
from reports import cost
from reports.errors import ReportError

MARKER = "frontier-run.json"
FAILED = "frontier-failed.json"
LOG = "mp2_local.log"
SEED_DIR = re.compile(r"^seed(\d+)$")

CSV_COLUMNS = ["label", "family", "method", "seeds", "seed_list", "best_acc_mean", "best_acc_std", "best_acc_min",
               "best_acc_max", "final_acc_mean", "bytes_up_mean", "bytes_down_mean", "run_bytes_mean", "run_wall_mean",
               "total_bytes", "total_wall_seconds", "bytes_vs_baseline", "cost_complete", "cost_counted", "flags"]



def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from None


def read_root(root: Path) -> tuple[list[dict], list[dict]]:
    """(finished runs, failed runs) under `root`, each {"label", "seed", "dir", "meta", and "summary" or "failure"}.

    A run directory without summary.json and without a failure record (one under way, or killed) is neither."""
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory of runs (benchmarks/frontier.py --root makes one)")
    done, failed = [], []
    for run_dir in sorted(root.glob("*/seed*")):
        match = SEED_DIR.match(run_dir.name)
        if not match or not run_dir.is_dir():
            continue
        meta = _read_json(run_dir / MARKER) if (run_dir / MARKER).exists() else {}
        run = {"label": run_dir.parent.name, "seed": int(match.group(1)), "dir": run_dir, "meta": meta}
        if (run_dir / "summary.json").exists():
            done.append({**run, "summary": _read_json(run_dir / "summary.json")})
        elif (run_dir / FAILED).exists():
            failed.append({**run, "failure": _read_json(run_dir / FAILED)})
    return done, failed


def prior_cost(meta: dict, base: Path) -> list[dict]:
    """The cost parts a setting paid before its runs: the prior run its predictor came from and the
    predictor's training, as the setting names them (paths relative to `base`). Runs given a --predictor
    whose origin is not named get an unmeasured part, so their cost reads as the lower bound it is."""
    parts = []
    if meta.get("prior_run"):
        prior = base / meta["prior_run"]
        parts.append(cost.run_part(f"prior run {meta['prior_run']}", _read_json(prior / "summary.json")))
    if meta.get("predictor_report"):
        seconds = cost.predictor_training_seconds(_read_json(base / meta["predictor_report"]))
        parts.append(cost.part(f"predictor training ({meta['predictor_report']})", 0, seconds))
    if not parts and "--predictor" in [f.split("=", 1)[0] for f in meta.get("flags", [])]:
        parts.append(cost.part("the predictor's collection run and training (not named: not counted)", None, None))
    return parts


def setting_flags(meta: dict) -> list[str]:
    """A run's flags without its --seed: what its setting's seeds have in common."""
    flags, out, skip = meta.get("flags", []), [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag == "--seed":
            skip = True
        elif not flag.startswith("--seed="):
            out.append(flag)
    return out


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values))


def aggregate(runs: list[dict], baseline: str = "baseline", base: Path = Path(".")) -> list[dict]:
    """One row per setting (label): its seeds' figures, its whole cost and its bytes against `baseline`'s."""
    rows = []
    for label in sorted({r["label"] for r in runs}):
        mine = sorted((r for r in runs if r["label"] == label), key=lambda r: r["seed"])
        best = [r["summary"]["best_test_acc"] for r in mine]
        meta = mine[0]["meta"]
        run_bytes = _mean([r["summary"]["bytes_pushed_total"] + r["summary"]["bytes_pulled_total"] for r in mine])
        run_wall = _mean([r["summary"]["wall_seconds"] for r in mine])
        whole = cost.total([cost.part("the run", run_bytes, run_wall), *prior_cost(meta, base)])
        method = mine[0]["summary"]["method"]
        rows.append({
            "label": label, "family": meta.get("family") or method, "method": method,
            "seeds": len(mine), "seed_list": [r["seed"] for r in mine],
            "best_acc_mean": _mean(best), "best_acc_std": statistics.stdev(best) if len(best) > 1 else None,
            "best_acc_min": min(best), "best_acc_max": max(best),
            "final_acc_mean": _mean([r["summary"]["final_test_acc"] for r in mine]),
            "bytes_up_mean": _mean([r["summary"]["bytes_pushed_total"] for r in mine]),
            "bytes_down_mean": _mean([r["summary"]["bytes_pulled_total"] for r in mine]),
            "run_bytes_mean": run_bytes, "run_wall_mean": run_wall,
            "total_bytes": whole["bytes"], "total_wall_seconds": whole["wall_seconds"],
            "cost_complete": whole["complete"], "cost_parts": whole["parts"],
            "cost_counted": " + ".join(p["part"] for p in whole["parts"]),
            "flags": " ".join(setting_flags(meta)),
            "flags_differ": len({tuple(setting_flags(r["meta"])) for r in mine}) > 1,
            "commits": sorted({r["meta"]["commit"] for r in mine if r["meta"].get("commit")}),
        })
    ref = next((r for r in rows if r["label"] == baseline), None)
    for r in rows:
        r["bytes_vs_baseline"] = r["total_bytes"] / ref["total_bytes"] if ref else None
    return sorted(rows, key=lambda r: (r["total_bytes"], r["label"]))


def strongest_by_budget(rows: list[dict]) -> list[dict]:
    """Where the best setting changes as the byte budget grows: each entry is the smallest budget (a
    setting's total bytes) at which that setting has the highest mean best accuracy of all settings within
    it. Settings whose cost is a lower bound (a part not measured) are left out: they could not be placed."""
    steps, leader = [], None
    for r in sorted((r for r in rows if r["cost_complete"]), key=lambda r: (r["total_bytes"], -r["best_acc_mean"])):
        if leader is None or r["best_acc_mean"] > leader["best_acc_mean"]:
            leader = r
            steps.append({"budget_bytes": r["total_bytes"], "label": r["label"], "best_acc_mean": r["best_acc_mean"],
                          "best_acc_std": r["best_acc_std"], "seeds": r["seeds"]})
    return steps


def _acc(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def budget_line(steps: list[dict]) -> str:
    if not steps:
        return "No setting has a complete cost yet: nothing to rank."
    return "Strongest by byte budget (mean best test accuracy over seeds): " + "; ".join(
        f"at ≤ {s['budget_bytes'] / 1e6:.1f} MB the best is {s['label']} ({_acc(s['best_acc_mean'], s['best_acc_std'])}, "
        f"{s['seeds']} seed{'s' if s['seeds'] != 1 else ''})" for s in steps) + "."


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def markdown(result: dict) -> str:
    rows, prov = result["rows"], result["provenance"]
    lines = ["# Accuracy for bytes", "", *provenance.markdown_lines(prov), "",
             result["summary_line"], "",
             "| setting | method | seeds | best test acc (mean ± std) | min–max | up (MB) | down (MB) | total (MB) | "
             "vs baseline | wall (s) | cost counted | flags |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bound = "" if r["cost_complete"] else "≥ "
        lines.append(
            f"| {r['label']} | {r['method']} | {r['seeds']} | {_acc(r['best_acc_mean'], r['best_acc_std'])} | "
            f"{r['best_acc_min']:.4f}–{r['best_acc_max']:.4f} | {r['bytes_up_mean'] / 1e6:.1f} | "
            f"{r['bytes_down_mean'] / 1e6:.1f} | {bound}{r['total_bytes'] / 1e6:.1f} | {bound}{_pct(r['bytes_vs_baseline'])} | "
            f"{bound}{r['total_wall_seconds']:.1f} | {r['cost_counted']} | `{r['flags']}` |")
    lines += ["", *(f"- {n}" for n in result["notes"])]
    return "\n".join(lines) + "\n"


def notes(rows: list[dict], failed: list[dict], baseline: str) -> list[str]:
    out = ["Per setting, over its seeds: up and down are the bytes of every step (the PS's bytes_pushed_total and "
           "bytes_pulled_total), means over seeds; total adds what else the cost counts; wall is the PS's "
           "wall_seconds (predictor training the PS does during a run included), plus any prior run's and "
           "predictor training's; std is the sample standard deviation (none for one seed); ≥ marks a lower bound."]
    if not any(r["label"] == baseline for r in rows):
        out.append(f"No finished run of the baseline setting {baseline!r}: no bytes fractions.")
    for r in rows:
        if r["flags_differ"]:
            out.append(f"{r['label']}: its seeds ran with different flags (see frontier.json): the grid changed between runs.")
    for f in failed:
        out.append(f"FAILED: {f['label']} seed {f['seed']}: {f['failure'].get('reason', 'no reason recorded')} "
                   f"(log: {f['failure'].get('log', LOG)})")
    return out


def build(root: Path, argv: list[str], baseline: str = "baseline", base: Path = Path(".")) -> dict:
    """The whole report of `root` as one dict (what frontier.json holds)."""
    runs, failed = read_root(root)
    rows = aggregate(runs, baseline, base)
    steps = strongest_by_budget(rows)
    return {"root": provenance.portable(str(root)), "baseline": baseline, "provenance": provenance.record(argv=argv),
            "summary_line": budget_line(steps), "strongest_by_budget": steps, "rows": rows,
            "failed": [{"label": f["label"], "seed": f["seed"], **f["failure"]} for f in failed],
            "notes": notes(rows, failed, baseline)}


def write(out: Path, result: dict) -> None:
    """frontier.json, frontier.csv, frontier.md and (with matplotlib) frontier.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    npzio.write_json(out / "frontier.json", result)
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in result["rows"]:
        writer.writerow({**r, "seed_list": " ".join(map(str, r["seed_list"]))})
    npzio.write_bytes(out / "frontier.csv", text.getvalue().encode())
    npzio.write_bytes(out / "frontier.md", markdown(result).encode())
    _plot(out / "frontier.png", result)


def _plot(path: Path, result: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the JSON, CSV and Markdown carry the same figures
    rows = result["rows"]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for family in sorted({r["family"] for r in rows}):
        mine = sorted((r for r in rows if r["family"] == family), key=lambda r: r["total_bytes"])
        x = [r["total_bytes"] / 1e6 for r in mine]
        y = [r["best_acc_mean"] for r in mine]
        spread = [[r["best_acc_mean"] - r["best_acc_min"] for r in mine], [r["best_acc_max"] - r["best_acc_mean"] for r in mine]]
        is_baseline = any(r["label"] == result["baseline"] for r in mine) and len(mine) == 1
        ax.errorbar(x, y, yerr=spread, marker="*" if is_baseline else "o", markersize=12 if is_baseline else 6,
                    linestyle="none" if is_baseline else "-", capsize=3, label=family)
        for r, xi, yi in zip(mine, x, y):
            ax.annotate(r["label"] + ("" if r["cost_complete"] else " (≥)"), (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set(xlabel="bytes up + down per run, whole cost (MB, log)", ylabel="best test accuracy (mean; bars: min–max over seeds)",
           title="accuracy for bytes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    npzio.write_bytes(path, buffer.getvalue())


def report(root: Path, out: Path, argv: list[str], baseline: str = "baseline") -> dict:
    """Build the report of `root` and write it to `out`; ReportError for a root or record that cannot be read."""
    result = build(Path(root), argv, baseline)
    if not result["rows"] and not result["failed"]:
        raise ReportError(f"{root} holds no finished or failed run (ROOT/LABEL/seedN/summary.json)")
    write(Path(out), result)
    return result
