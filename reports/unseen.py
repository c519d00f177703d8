"""MP² on a task its predictor never saw (results/unseen): the README's four tables from the runs'
summary.json files, kept as RECORDS/NAME/summary.json.

A run whose summary.json was not kept may stand as RECORDS/NAME/transcribed.json: the figures the
tables need (final_test_acc, last3_test_acc_mean, bytes_pushed_total), copied from where they were
first reported, with a note saying where.

Runs are compared by reports.accuracy's figure (the test accuracy at the best validation epoch, else
the final epoch's), never by their best test epoch.

    python -m reports unseen results/unseen/records --readme results/unseen/README.md
"""
from __future__ import annotations

import statistics
from pathlib import Path

from reports import accuracy
from reports.readme import ReportError, read_json, write_blocks

STUDY = "unseen"
MAIN_BASELINE = "fashion-baseline-s0"  # the main job's Fashion-MNIST baseline (seed 0), whose snapshots trained the predictor

# The digits table: its baseline, then (run, label).
DIGITS_BASELINE = "digits-baseline"
DIGITS = [
    ("digits-baseline", "baseline"),
    ("digits-warm", "**MP², recommended (warm start from the Fashion predictor)**"),
    ("digits-warm-control", "control, same schedule"),
    ("digits-fixed", "MP², the Fashion predictor fixed (`--predictor`)"),
    ("digits-hold-fh", "control, no full push at all"),
    ("digits-scratch", "online MP², the same flags without `--predictor-init` (ablation)"),
    ("digits-online-fh", "online MP², no predictor file, no partial snapshots"),
]
# The transfer table: (predictor trained on, used on, baseline, MP², control).
TRANSFER = [
    ("Fashion-MNIST, seed 0", "Fashion-MNIST, seed 0", MAIN_BASELINE, "fashion-s0-warm", "fashion-s0-warm-control"),
    ("Fashion-MNIST, seed 0", "Fashion-MNIST, seed 1", "fashion-s1-baseline", "fashion-s1-warm", "fashion-s1-warm-control"),
    ("Fashion-MNIST", "digits", DIGITS_BASELINE, "digits-warm", "digits-warm-control"),
    ("digits", "Fashion-MNIST", MAIN_BASELINE, "digits-to-fashion-warm", "digits-to-fashion-warm-control"),
]
# Online MP² with no predictor file: each seed's baseline.
SEED_BASELINES = [MAIN_BASELINE, "fashion-s1-baseline", "fashion-baseline-s2", "fashion-baseline-s3"]
SEED_SUFFIXES = ["", "-seed1", "-seed2", "-seed3"]
# The variants that led to the recommended one (each a name prefix, its seeds by SEED_SUFFIXES).
VARIANTS = [
    ("rounds hold out the freshest 20 % (the stage's default), no warm-up", "fashion-online-fh-stage6"),
    ("freshest 5 % held out, no warm-up (`-h05`)", "fashion-online-fh-stage6-h05"),
    ("freshest 5 %, one epoch of lr warm-up (`-h05w`, recommended)", "fashion-online-fh-stage6-h05w"),
]
RECOMMENDED = VARIANTS[-1][1]
TRANSCRIBED_FIELDS = ("final_test_acc", "last3_test_acc_mean", "bytes_pushed_total")


def read_run(records: Path, name: str) -> dict:
    """RECORDS/NAME/summary.json, else RECORDS/NAME/transcribed.json (checked for the figures it must give)."""
    summary, transcribed = records / name / "summary.json", records / name / "transcribed.json"
    if summary.exists():
        return read_json(summary)
    if transcribed.exists():
        figures = read_json(transcribed)
        missing = [f for f in TRANSCRIBED_FIELDS if f not in figures]
        if missing:
            raise ReportError(f"{transcribed} lacks {', '.join(missing)}")
        return figures
    raise ReportError(f"no record of the run {name}: {summary} does not exist")


def points(value: float) -> str:
    """A difference of accuracies in points, signed, with a true minus sign."""
    return f"{100 * value:+.2f}".replace("-", "−")


def share(value: float, of: float) -> str:
    return f"{100 * value / of:.1f} %"


def curve_figures(s: dict) -> dict:
    """The test accuracy (reports.accuracy's, with its kind) and the mean of the last three epochs' (less at
    the mercy of one lucky epoch)."""
    curve = s.get("test_acc_by_epoch")
    test, kind = accuracy.honest_accuracy(s)
    return {"test": test, "kind": kind, "last3": statistics.fmean(curve[-3:]) if curve else s["last3_test_acc_mean"],
            "bytes": s["bytes_pushed_total"]}


def online(s: dict) -> dict:
    return (s.get("method_stats") or {}).get("online") or {}


def switch_step(s: dict) -> int | None:
    return next((e["step"] for e in online(s).get("events", []) if e["event"] == "switch to mp2"), None)


def later_rounds(s: dict) -> tuple[int, int]:
    """(rounds after the first that replaced the live predictor, rounds after the first)."""
    later = [e for e in online(s).get("events", []) if e["event"] == "trained" and e["round"] > 1]
    return sum(bool(e["passed"]) for e in later), len(later)


def digits_table(records: Path) -> str:
    base = read_run(records, DIGITS_BASELINE)
    lines = [f"| run (digits, 30 epochs) | {accuracy.HEADER} | vs baseline | pushed | of baseline's | full steps "
             "| switch step | rounds | barrier held (s) |", "|---|---|---|---|---|---|---|---|---|"]
    kinds = []
    for name, label in DIGITS:
        s = read_run(records, name)
        is_base = name == DIGITS_BASELINE
        full = s["steps"] if s["method"] == "baseline" else s["phases"].get("full", 0)
        stats = online(s)
        stalled = stats.get("stalled_seconds")
        kinds.append(accuracy.honest_accuracy(s)[1])
        gap = "" if is_base else points(accuracy.honest_accuracy(s)[0] - accuracy.honest_accuracy(base)[0])
        lines.append(f"| {label} | {accuracy.cell(s)} | {gap} | "
                     f"{s['bytes_pushed_total'] / 1e6:.1f} MB | {share(s['bytes_pushed_total'], base['bytes_pushed_total'])} | "
                     f"{full} of {s['steps']} | {switch_step(s) or ''} | {stats.get('rounds', '')} | "
                     f"{'' if stalled is None else f'{stalled:.0f}'} |")
    return accuracy.with_footnote(lines, kinds)


def transfer_table(records: Path) -> str:
    lines = [f"| predictor trained on | used on | baseline {accuracy.HEADER} | MP² (vs baseline) | control (vs baseline) "
             "| pushed (control) |",
             "|---|---|---|---|---|---|"]
    kinds = []
    for trained_on, used_on, base_name, mp2_name, control_name in TRANSFER:
        base, mp2, control = (read_run(records, n) for n in (base_name, mp2_name, control_name))
        kinds += [accuracy.honest_accuracy(s)[1] for s in (base, mp2, control)]
        gap = lambda s: points(accuracy.honest_accuracy(s)[0] - accuracy.honest_accuracy(base)[0])  # noqa: E731
        pushed = share(mp2["bytes_pushed_total"], base["bytes_pushed_total"])
        control_pushed = share(control["bytes_pushed_total"], base["bytes_pushed_total"])
        lines.append(f"| {trained_on} | {used_on} | {accuracy.cell(base)} | {accuracy.cell(mp2)} ({gap(mp2)}) | "
                     f"{accuracy.cell(control)} ({gap(control)}) | "
                     f"{pushed}" + ("" if control_pushed == pushed else f" ({control_pushed})") + " |")
    return accuracy.with_footnote(lines, kinds)


def _pair(f: dict) -> str:
    return f"{f['test']:.4f}{accuracy.mark(f['kind'])} / {f['last3']:.4f}"


def seeds_table(records: Path, prefix: str = RECOMMENDED) -> str:
    """Per seed the baseline's and MP²'s test accuracy (reports.accuracy's) and last-3 mean, then their
    means over the seeds."""
    lines = [f"| MP² run | baseline: {accuracy.HEADER} / last-3 mean | MP²: {accuracy.HEADER} / last-3 mean "
             "| test acc: MP² − baseline | pushed |", "|---|---|---|---|---|"]
    pairs = []
    for base_name, suffix in zip(SEED_BASELINES, SEED_SUFFIXES):
        base, mp2 = curve_figures(read_run(records, base_name)), curve_figures(read_run(records, prefix + suffix))
        pairs.append((base, mp2))
        lines.append(f"| {prefix + suffix} | {_pair(base)} | {_pair(mp2)} | {points(mp2['test'] - base['test'])} | "
                     f"{share(mp2['bytes'], base['bytes'])} |")
    mean = {side: {**{k: statistics.fmean(p[side][k] for p in pairs) for k in ("test", "last3", "bytes")},
                   "kind": [p[side]["kind"] for p in pairs]} for side in (0, 1)}
    lines.append(f"| **mean of {len(pairs)}** | {_pair(mean[0])} | {_pair(mean[1])} | "
                 f"**{points(mean[1]['test'] - mean[0]['test'])}** | {share(mean[1]['bytes'], mean[0]['bytes'])} |")
    return accuracy.with_footnote(lines, mean[0]["kind"] + mean[1]["kind"])


def variants_table(records: Path) -> str:
    """Each variant over the four seeds: the mean and per-seed gap of the test accuracy (reports.accuracy's)
    to the seed's baseline, and how many rounds after the first replaced the live predictor."""
    lines = [f"| variant | mean {accuracy.HEADER}: MP² − baseline | per seed | rounds taken after the first |",
             "|---|---|---|---|"]
    kinds = []
    for label, prefix in VARIANTS:
        gaps, taken, later = [], 0, 0
        for base_name, suffix in zip(SEED_BASELINES, SEED_SUFFIXES):
            mp2 = read_run(records, prefix + suffix)
            (mine, mine_kind), (base, base_kind) = map(accuracy.honest_accuracy, (mp2, read_run(records, base_name)))
            gaps.append(mine - base)
            kinds += [mine_kind, base_kind]
            done, of = later_rounds(mp2)
            taken, later = taken + done, later + of
        lines.append(f"| {label} | {points(statistics.fmean(gaps))} | {', '.join(points(g) for g in gaps)} | {taken} of {later} |")
    return accuracy.with_footnote(lines, kinds)


def report(records: Path, readme: Path) -> dict[str, str]:
    """The four tables of the runs in `records`, written into `readme`'s blocks."""
    records = Path(records)
    if not records.is_dir():
        raise ReportError(f"{records} is not a directory of run records (NAME/summary.json)")
    blocks = {"digits": digits_table(records), "transfer": transfer_table(records), "seeds": seeds_table(records),
              "variants": variants_table(records)}
    write_blocks(Path(readme), STUDY, blocks)
    return blocks
