"""The soak (results/soak): benchmarks/soak.py's soak.json as the README's table.

    python -m reports soak results/soak/soak.json --readme results/soak/README.md
"""
from __future__ import annotations

import statistics
from pathlib import Path

from reports.readme import ReportError, read_json, write_blocks

STUDY = "soak"


def table(soak: dict) -> str:
    """Runs, steps, failures, recoveries, retried calls, seconds per run and final test accuracy (the last
    epoch's: no selection on the test set) over the finished runs."""
    runs = soak["results"]
    if not runs:
        raise ReportError("the soak has no runs")
    seconds = [r["seconds"] for r in runs]
    accs = [r["final_test_acc"] for r in runs if r.get("final_test_acc") is not None]
    acc = f"{min(accs):.4f} / {max(accs):.4f}" if accs else "—"
    failed = sum(r["exit"] != 0 for r in runs)
    steps = sum(r.get("steps", 0) for r in runs)
    recoveries = sum(len(r.get("recoveries", [])) for r in runs)
    return ("| runs | steps | failed | recoveries | retried calls | seconds per run (min / median / max) "
            "| final test acc (min / max) |\n"
            "|---:|---:|---:|---:|---:|---|---|\n"
            f"| {len(runs)} | {steps:,} | {failed} | {recoveries} | {sum(r.get('retries', 0) for r in runs)} | "
            f"{min(seconds):.1f} / {statistics.median(seconds):.1f} / {max(seconds):.1f} | {acc} |\n")


def report(soak_json: Path, readme: Path, block: str = "table") -> str:
    text = table(read_json(Path(soak_json)))
    write_blocks(Path(readme), STUDY, {block: text})
    return text
