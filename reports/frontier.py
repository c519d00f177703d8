"""The accuracy-for-bytes frontier of a grid of runs (benchmarks/frontier.py), at one or more budgets.

Per row (a method setting) and budget (a number of epochs): the candidate chosen on validation data,
then over its seeds the final test accuracy and the test accuracy at the epoch of best validation
accuracy (mean, std, min–max), the bytes up and down of every step to that budget, their share of the
baseline's, the wall time, and what else the cost counts (a prior run, predictor training). Nothing is
selected on the test set: the test accuracy of the best test epoch is never read.

A run root holds ROOT/LABEL/seedN/ per run: the run's own files (summary.json once it finished,
metrics.jsonl), frontier-run.json (the setting's flags, the commit, any prior run it used),
frontier-failed.json for a run that failed, and mp2_local.log. A tuned row's candidates are labelled
ROW__TAG (e.g. baseline__lr0.003); ROOT/frontier-tuning.json (written by the grid) lists each row's
candidates in the grid's order, the tuning seed and the budgets.

A grid's runs need not all be on this machine: `--carry RECORD` (an earlier frontier.json) keeps that
record's rows for every row that has no run under ROOT, marked as carried with the record's commit, so a
grid can add rows in a later session without rerunning the ones it already reported.

    python -m reports frontier runs/frontier --out results/frontier [--carry results/frontier/frontier.json]
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

from data.validation import select_epoch
from helpers import npzio, provenance
from reports import cost
from reports import readme as readme_blocks
from reports.errors import ReportError

MARKER = "frontier-run.json"
FAILED = "frontier-failed.json"
TUNING = "frontier-tuning.json"
LOG = "mp2_local.log"
SEED_DIR = re.compile(r"^seed(\d+)$")
CANDIDATE = "__"  # ROW__TAG: one candidate of a tuned row
CONTROLS = "controls"  # the family of rows that are not ranked (benchmarks/frontier.py's optimizer controls)

CSV_COLUMNS = ["budget_epochs", "row", "label", "family", "method", "seeds", "seed_list",
               "sel_acc_mean", "sel_acc_std", "sel_acc_min", "sel_acc_max",
               "final_acc_mean", "final_acc_std", "final_acc_min", "final_acc_max", "tuning_val_acc",
               "bytes_up_mean", "bytes_down_mean", "run_bytes_mean", "run_wall_mean", "total_bytes",
               "total_wall_seconds", "bytes_vs_baseline", "cost_complete", "cost_counted", "flags"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from None


def _read_metrics(run_dir: Path) -> list[dict]:
    """The run's per-epoch lines (a line cut short by a kill is skipped: the summary is what counts)."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_root(root: Path) -> tuple[list[dict], list[dict]]:
    """(finished runs, failed runs) under `root`, each {"label", "seed", "dir", "meta", and "summary" and
    "metrics", or "failure"}. A run directory without summary.json and without a failure record (one under
    way, or killed) is neither."""
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
            done.append({**run, "summary": _read_json(run_dir / "summary.json"), "metrics": _read_metrics(run_dir)})
        elif (run_dir / FAILED).exists():
            failed.append({**run, "failure": _read_json(run_dir / FAILED)})
    return done, failed


def read_tuning(root: Path) -> dict:
    """The grid's tuning plan (frontier-tuning.json), or {} for a root without one."""
    return _read_json(root / TUNING) if (root / TUNING).exists() else {}


def row_of(label: str) -> str:
    return label.split(CANDIDATE, 1)[0]


def epochs_of(run: dict) -> int:
    return len(run["summary"].get("test_acc_by_epoch") or [])


def at_budget(run: dict, budget: int) -> dict | None:
    """A run's figures had it stopped after `budget` epochs (None if it ran fewer). A run is the prefix of
    a longer one of the same flags (the rate schedule and the data order depend on the step, never on
    --epochs), so one run of E epochs gives every budget up to E. `selected` is the test accuracy at the
    epoch of best validation accuracy within the budget (ties to the earlier), None for a record made
    without a validation split."""
    summary = run["summary"]
    test = summary.get("test_acc_by_epoch") or []
    if len(test) < budget:
        return None
    val = (summary.get("val_acc_by_epoch") or [])[:budget]
    has_val = len(val) == budget and all(v is not None for v in val)
    best = select_epoch(val) if has_val else None
    if budget == len(test):
        up, down, wall = summary["bytes_pushed_total"], summary["bytes_pulled_total"], summary["wall_seconds"]
    else:
        lines = {m["epoch"]: m for m in run["metrics"] if "epoch" in m}
        if not all(e in lines for e in range(1, budget + 1)):
            return None  # bytes to the budget unknown
        up = sum(lines[e]["bytes_pushed"] for e in range(1, budget + 1))
        down = sum(lines[e]["bytes_pulled"] for e in range(1, budget + 1))
        wall = lines[budget].get("wall_seconds", summary["wall_seconds"] * budget / len(test))
    return {"final": test[budget - 1], "selected": None if best is None else test[best],
            "best_val": None if best is None else val[best], "best_val_epoch": None if best is None else best + 1,
            "bytes_up": up, "bytes_down": down, "wall": wall}


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


def _stats(values: list[float | None], prefix: str) -> dict:
    known = [v for v in values if v is not None]
    if not known or len(known) < len(values):
        return {f"{prefix}_mean": None, f"{prefix}_std": None, f"{prefix}_min": None, f"{prefix}_max": None}
    return {f"{prefix}_mean": float(statistics.fmean(known)),
            f"{prefix}_std": statistics.stdev(known) if len(known) > 1 else None,
            f"{prefix}_min": min(known), f"{prefix}_max": max(known)}


def choose(candidates: list[str], runs: list[dict], seed: int, budget: int) -> tuple[str | None, list[dict]]:
    """The candidate whose run on the tuning `seed` has the best validation accuracy within `budget`
    epochs (a tie goes to the one listed first: the grid's default), and each candidate's figure. None
    when a candidate has no finished run of that length or no validation figures: a row is chosen over
    all its candidates or not at all."""
    table, chosen, best = [], None, None
    for label in candidates:
        run = next((r for r in runs if r["label"] == label and r["seed"] == seed), None)
        figures = at_budget(run, budget) if run else None
        val = figures["best_val"] if figures else None
        table.append({"label": label, "best_val_acc": val, "flags": " ".join(setting_flags(run["meta"])) if run else None})
        if val is not None and (best is None or val > best):
            chosen, best = label, val
    if any(t["best_val_acc"] is None for t in table):
        return None, table
    return chosen, table


def _row(row: str, label: str, mine: list[dict], budget: int, base: Path) -> dict:
    figures = [at_budget(r, budget) for r in mine]
    meta = mine[0]["meta"]
    run_bytes = statistics.fmean(f["bytes_up"] + f["bytes_down"] for f in figures)
    run_wall = statistics.fmean(f["wall"] for f in figures)
    whole = cost.total([cost.part("the run", run_bytes, run_wall), *prior_cost(meta, base)])
    method = mine[0]["summary"]["method"]
    return {
        "budget_epochs": budget, "row": row, "label": label, "family": meta.get("family") or method, "method": method,
        "seeds": len(mine), "seed_list": [r["seed"] for r in mine],
        **_stats([f["selected"] for f in figures], "sel_acc"), **_stats([f["final"] for f in figures], "final_acc"),
        "best_val_epochs": [f["best_val_epoch"] for f in figures],
        "bytes_up_mean": statistics.fmean(f["bytes_up"] for f in figures),
        "bytes_down_mean": statistics.fmean(f["bytes_down"] for f in figures),
        "run_bytes_mean": run_bytes, "run_wall_mean": run_wall,
        "total_bytes": whole["bytes"], "total_wall_seconds": whole["wall_seconds"],
        "cost_complete": whole["complete"], "cost_parts": whole["parts"],
        "cost_counted": " + ".join(p["part"] for p in whole["parts"]),
        "flags": " ".join(setting_flags(meta)),
        "flags_differ": len({tuple(setting_flags(r["meta"])) for r in mine}) > 1,
        "commits": sorted({r["meta"]["commit"] for r in mine if r["meta"].get("commit")}),
    }


def aggregate(runs: list[dict], budget: int, tuning: dict | None = None, baseline: str = "baseline",
              base: Path = Path(".")) -> list[dict]:
    """One row per row name at `budget` epochs: a tuned row's chosen candidate over its seeds (the tuning
    seed's validation accuracy of every candidate beside it), an untuned row's one setting."""
    tuning = tuning or {}
    plan = tuning.get("rows", {})
    tune_seed = tuning.get("tune_seed", 0)
    rows = []
    for row in sorted({row_of(r["label"]) for r in runs}):
        labels = plan.get(row, {}).get("candidates") or sorted({r["label"] for r in runs if row_of(r["label"]) == row})
        tuning_table = None
        if len(labels) > 1:
            label, tuning_table = choose(labels, runs, tune_seed, budget)
            if label is None:
                continue  # its tuning is not finished at this budget: reported as missing
        else:
            label = labels[0]
        mine = sorted((r for r in runs if r["label"] == label and at_budget(r, budget)), key=lambda r: r["seed"])
        if mine:
            rows.append({**_row(row, label, mine, budget, base), "tuning": tuning_table,
                         "tuning_val_acc": None if tuning_table is None else
                         " ".join(f"{t['label'].split(CANDIDATE, 1)[-1]}:{t['best_val_acc']:.4f}" for t in tuning_table)})
    return by_bytes(rows, baseline)


def by_bytes(rows: list[dict], baseline: str) -> list[dict]:
    """`rows` by their whole cost in bytes, each with its share of the baseline row's (None without one)."""
    ref = next((r for r in rows if r["row"] == baseline), None)
    for r in rows:
        r["bytes_vs_baseline"] = r["total_bytes"] / ref["total_bytes"] if ref else None
    return sorted(rows, key=lambda r: (r["total_bytes"], r["row"]))


def _rank_key(r: dict) -> float | None:
    return r["sel_acc_mean"] if r["sel_acc_mean"] is not None else None


def strongest_by_budget(rows: list[dict]) -> list[dict]:
    """Where the best row changes as the byte budget grows: each entry is the smallest byte budget (a
    row's total bytes) at which that row has the highest mean test accuracy at the best validation epoch
    of all rows within it. Rows whose cost is a lower bound (a part not measured) or that have no
    validation figures are left out: they could not be placed; so are the controls (family CONTROLS: another
    setup, such as one worker, that answers a question about a row rather than competing with it)."""
    steps, leader = [], None
    ranked = [r for r in rows if r["cost_complete"] and _rank_key(r) is not None and r.get("family") != CONTROLS]
    for r in sorted(ranked, key=lambda r: (r["total_bytes"], -_rank_key(r))):
        if leader is None or _rank_key(r) > _rank_key(leader):
            leader = r
            steps.append({"budget_bytes": r["total_bytes"], "row": r["row"], "label": r["label"],
                          "sel_acc_mean": r["sel_acc_mean"], "sel_acc_std": r["sel_acc_std"], "seeds": r["seeds"]})
    return steps


def _acc(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def budget_line(steps: list[dict], budget: int) -> str:
    if not steps:
        return f"At {budget} epochs no row has a complete cost and validation figures yet: nothing to rank."
    return (f"At {budget} epochs, strongest by byte budget (mean test accuracy at the best validation epoch over "
            f"seeds): " + "; ".join(
                f"at ≤ {s['budget_bytes'] / 1e6:.1f} MB {s['row']} ({_acc(s['sel_acc_mean'], s['sel_acc_std'])}, "
                f"{s['seeds']} seed{'s' if s['seeds'] != 1 else ''})" for s in steps) + ".")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _chosen(r: dict) -> str:
    return r["label"].split(CANDIDATE, 1)[1] if CANDIDATE in r["label"] else "—"


def markdown(result: dict) -> str:
    prov = result["provenance"]
    lines = ["# Accuracy for bytes", "", *provenance.markdown_lines(prov), "",
             "Ranked by the test accuracy at the epoch of best validation accuracy (*at best val*); the final "
             "epoch's test accuracy beside it. Nothing here is selected on the test set.", ""]
    for section in result["budgets"]:
        budget = section["budget_epochs"]
        lines += [f"## {budget} epochs", "", section["summary_line"], "",
                  "| row | chosen | seeds | test acc at best val (mean ± std) | min–max | final test acc (mean ± std) | "
                  "up (MB) | down (MB) | total (MB) | vs baseline | wall (s) | cost counted | flags |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in section["rows"]:
            bound = "" if r["cost_complete"] else "≥ "
            spread = "—" if r["sel_acc_min"] is None else f"{r['sel_acc_min']:.4f}–{r['sel_acc_max']:.4f}"
            lines.append(
                f"| {r['row']}{' (carried)' if r.get('carried_from') else ''} | {_chosen(r)} | {r['seeds']} | {_acc(r['sel_acc_mean'], r['sel_acc_std'])} | {spread} | "
                f"{_acc(r['final_acc_mean'], r['final_acc_std'])} | {r['bytes_up_mean'] / 1e6:.1f} | "
                f"{r['bytes_down_mean'] / 1e6:.1f} | {bound}{r['total_bytes'] / 1e6:.1f} | "
                f"{bound}{_pct(r['bytes_vs_baseline'])} | {bound}{r['total_wall_seconds']:.1f} | {r['cost_counted']} | "
                f"`{r['flags']}` |")
        tuned = [r for r in section["rows"] if r["tuning"]]
        if tuned:
            lines += ["", f"Tuning at {budget} epochs (best validation accuracy of each candidate on the tuning seed; "
                          "**bold**: chosen):", "", "| row | candidates |", "|---|---|"]
            for r in tuned:
                cells = ", ".join((f"**{t['label'].split(CANDIDATE, 1)[1]} {t['best_val_acc']:.4f}**" if t["label"] == r["label"]
                                   else f"{t['label'].split(CANDIDATE, 1)[1]} {t['best_val_acc']:.4f}") for t in r["tuning"])
                lines.append(f"| {r['row']} | {cells} |")
        lines.append("")
    lines += [*(f"- {n}" for n in result["notes"])]
    return "\n".join(lines) + "\n"


def notes(sections: list[dict], runs: list[dict], failed: list[dict], tuning: dict, baseline: str) -> list[str]:
    out = ["Per row, over its seeds: *at best val* is each run's test accuracy at the epoch of its best validation "
           "accuracy within the budget (ties to the earlier epoch), *final* its test accuracy at the budget's last "
           "epoch; up and down are the bytes of every step to the budget's end (the PS's per-epoch bytes_pushed and "
           "bytes_pulled), means over seeds; total adds what else the cost counts; wall is the PS's wall time to the "
           "budget's end (predictor training the PS does during a run included), plus any prior run's and predictor "
           "training's; std is the sample standard deviation (none for one seed); ≥ marks a lower bound.",
           "A shorter budget is read from the same runs as the longest (their first epochs): the rate schedule and "
           "the data order depend on the step, never on --epochs."]
    if tuning.get("rows"):
        out.append(f"Tuned rows: every candidate runs on seed {tuning.get('tune_seed', 0)}; at each budget the one with "
                   "the best validation accuracy is chosen (a tie to the grid's default, listed first), then run on the "
                   "other seeds. The tuning runs' own bytes are not in a row's cost (every tuned row paid the same number).")
    reported = {r["row"] for s in sections for r in s["rows"]}
    for row in sorted(set(tuning.get("rows", {})) - reported):
        out.append(f"MISSING: {row}: its tuning is not finished (no row at any budget).")
    for s in sections:
        missing = sorted(reported - {r["row"] for r in s["rows"]})
        if missing:
            out.append(f"At {s['budget_epochs']} epochs, no row yet for: {', '.join(missing)}.")
    if not any(r["row"] == baseline for s in sections for r in s["rows"]):
        out.append(f"No finished run of the baseline row {baseline!r}: no bytes fractions.")
    carried = sorted({(r["row"], r["carried_from"][:7]) for s in sections for r in s["rows"] if r.get("carried_from")})
    if carried:
        out.append("Carried from an earlier record (their runs are not under this root; figures as that record, made at "
                   "the commit named, reported them): " + ", ".join(f"{row} ({commit})" for row, commit in carried) + ".")
    for s in sections:
        for r in s["rows"]:
            if r["flags_differ"]:
                out.append(f"{r['label']}: its seeds ran with different flags (see frontier.json): the grid changed between runs.")
            if r["sel_acc_mean"] is None:
                out.append(f"{r['label']}: a record made without a validation split: only its final test accuracy is "
                           "shown, and it is not ranked.")
    for f in failed:
        out.append(f"FAILED: {f['label']} seed {f['seed']}: {_portable_text(f['failure'].get('reason', 'no reason recorded'), f)} "
                   f"(log: {_log(f)})")
    return out


def _log(run: dict) -> str:
    """A run's log, named as the root was (the record's own path may be of another machine or place)."""
    return provenance.portable(str(run["dir"] / LOG))


def _portable_text(text: str, run: dict) -> str:
    return text.replace(str(Path(run["dir"]).resolve()), provenance.portable(str(run["dir"])))


def read_carried(path: Path) -> dict:
    """An earlier report's rows by budget, each marked with the commit that report was made at."""
    record = _read_json(path)
    try:
        git = record["provenance"]["git"]
        commit = git["commit"] + ("+dirty" if git.get("dirty") else "")
        carried = {s["budget_epochs"]: [{**r, "carried_from": r.get("carried_from") or commit} for r in s["rows"]]
                   for s in record["budgets"]}
    except (KeyError, TypeError):
        raise ReportError(f"{path} is not a frontier record (python -m reports frontier writes one)") from None
    return {"budgets": carried, "tuning_rows": record.get("tuning", {}).get("rows", {})}


def carry(rows: list[dict], carried: list[dict], runs: list[dict], baseline: str) -> list[dict]:
    """`rows` and every carried row whose row has no run here; the bytes fractions taken again against the
    baseline of the merged rows."""
    here = {row_of(r["label"]) for r in runs}
    rows = rows + [dict(r) for r in carried if r["row"] not in here]
    return by_bytes(rows, baseline)


def build(root: Path, argv: list[str], baseline: str = "baseline", base: Path = Path("."),
          carried_record: Path | None = None) -> dict:
    """The whole report of `root` as one dict (what frontier.json holds), with an earlier record's rows for the
    rows that have no run here (`carried_record`)."""
    runs, failed = read_root(root)
    tuning = read_tuning(root)
    carried = read_carried(carried_record) if carried_record else {"budgets": {}, "tuning_rows": {}}
    if carried["tuning_rows"]:
        tuning = {**tuning, "rows": {**carried["tuning_rows"], **tuning.get("rows", {})}}
    budgets = tuning.get("budgets") or sorted({epochs_of(r) for r in runs})[-1:] or sorted(carried["budgets"])
    sections = []
    for budget in budgets:
        rows = carry(aggregate(runs, budget, tuning, baseline, base), carried["budgets"].get(budget, []), runs, baseline)
        steps = strongest_by_budget(rows)
        sections.append({"budget_epochs": budget, "summary_line": budget_line(steps, budget),
                         "strongest_by_budget": steps, "rows": rows})
    return {"root": provenance.portable(str(root)), "baseline": baseline, "provenance": provenance.record(argv=argv),
            "carried_from": None if carried_record is None else provenance.portable(str(carried_record)),
            "tuning": tuning, "budgets": sections,
            "summary_line": " ".join(s["summary_line"] for s in sections),
            "failed": [{"label": f["label"], "seed": f["seed"], **f["failure"], "reason": _portable_text(
                f["failure"].get("reason", ""), f), "log": _log(f)} for f in failed],
            "notes": notes(sections, runs, failed, tuning, baseline)}


def write(out: Path, result: dict) -> None:
    """frontier.json, frontier.csv, frontier.md and (with matplotlib) frontier.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    npzio.write_json(out / "frontier.json", result)
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for section in result["budgets"]:
        for r in section["rows"]:
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
    sections = [s for s in result["budgets"] if any(r["sel_acc_mean"] is not None for r in s["rows"])]
    if not sections:
        return
    fig, axes = plt.subplots(1, len(sections), figsize=(8 * len(sections), 5), squeeze=False)
    for ax, section in zip(axes[0], sections):
        # The controls answer a question about a row (frontier.md tables them); on the plot they would only set its scale.
        rows = [r for r in section["rows"] if r["sel_acc_mean"] is not None and r.get("family") != CONTROLS]
        for family in sorted({r["family"] for r in rows}):
            mine = sorted((r for r in rows if r["family"] == family), key=lambda r: r["total_bytes"])
            x = [r["total_bytes"] / 1e6 for r in mine]
            y = [r["sel_acc_mean"] for r in mine]
            spread = [[r["sel_acc_mean"] - r["sel_acc_min"] for r in mine], [r["sel_acc_max"] - r["sel_acc_mean"] for r in mine]]
            is_baseline = any(r["row"] == result["baseline"] for r in mine) and len(mine) == 1
            ax.errorbar(x, y, yerr=spread, marker="*" if is_baseline else "o", markersize=12 if is_baseline else 6,
                        linestyle="none" if is_baseline else "-", capsize=3, label=family)
            for r, xi, yi in zip(mine, x, y):
                ax.annotate(r["row"] + ("" if r["cost_complete"] else " (≥)"), (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set(xlabel="bytes up + down per run, whole cost (MB, log)",
               ylabel="test acc at best val epoch (mean; bars: min–max)",
               title=f"accuracy for bytes, {section['budget_epochs']} epochs")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    npzio.write_bytes(path, buffer.getvalue())


README_BLOCK = ("frontier", "summary")  # the block of a README that summary_table fills (reports/readme.py)


def summary_table(result: dict) -> str:
    """The frontier in a few lines for a README: per budget, every ranked row by its bytes, the test accuracy at
    the best validation epoch over its seeds; bold: the strongest row at its byte budget."""
    lines = []
    for section in result["budgets"]:
        strongest = {s["row"] for s in section["strongest_by_budget"]}
        lines += [f"**{section['budget_epochs']} epochs** (LeNet-5 / Fashion-MNIST, 4 workers):", "",
                  "| row | seeds | test acc at best val | final test acc | bytes up + down | vs baseline |",
                  "|---|---|---|---|---|---|"]
        for r in section["rows"]:
            if r.get("family") == CONTROLS or r["sel_acc_mean"] is None:
                continue
            name = f"**{r['row']}**" if r["row"] in strongest else r["row"]
            lines.append(f"| {name} | {r['seeds']} | {_acc(r['sel_acc_mean'], r['sel_acc_std'])} | "
                         f"{_acc(r['final_acc_mean'], r['final_acc_std'])} | {r['total_bytes'] / 1e6:,.1f} MB | "
                         f"{_pct(r['bytes_vs_baseline'])} |")
        lines.append("")
    return "\n".join(lines)


def report(root: Path, out: Path, argv: list[str], baseline: str = "baseline", readmes: tuple[Path, ...] = (),
           carried_record: Path | None = None) -> dict:
    """Build the report of `root` (with `carried_record`'s rows for rows without runs here) and write it to `out`
    (and its summary table into each of `readmes`' block "frontier summary"); ReportError for a root or record
    that cannot be read."""
    result = build(Path(root), argv, baseline, carried_record=None if carried_record is None else Path(carried_record))
    if not any(s["rows"] for s in result["budgets"]) and not result["failed"]:
        raise ReportError(f"{root} holds no finished or failed run (ROOT/LABEL/seedN/summary.json)")
    write(Path(out), result)
    for readme in readmes:
        readme_blocks.write_blocks(Path(readme), README_BLOCK[0], {README_BLOCK[1]: summary_table(result)})
    return result
