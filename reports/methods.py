"""The five methods of the first comparison (results/methods): one row per run's summary.json, copied
into a directory as NAME.json, with its bytes against the baseline's.

    python -m reports methods results/methods/summaries --readme results/methods/README.md
"""
from __future__ import annotations

from pathlib import Path

from reports import accuracy
from reports.readme import ReportError, read_json, write_blocks

STUDY = "methods"
BASELINE = "baseline"


def read_summaries(directory: Path) -> dict[str, dict]:
    """NAME -> summary for every NAME.json in `directory`, by name."""
    if not Path(directory).is_dir():
        raise ReportError(f"{directory} is not a directory of summaries (NAME.json, each a run's summary.json)")
    summaries = {p.stem: read_json(p) for p in sorted(Path(directory).glob("*.json"))}
    if not summaries:
        raise ReportError(f"{directory} holds no NAME.json (copy each run's summary.json there as NAME.json)")
    return summaries


def _share(value: int, base: dict | None, key: str) -> str:
    return "" if base is None else f"{100 * value / base[key]:.2f} %"


def table(summaries: dict[str, dict], baseline: str = BASELINE) -> str:
    """A row per run: its method, the options it ran with, lr, accuracies, bytes both ways and their share
    of the baseline run's (blank without a baseline), and the PS's wall time."""
    base = summaries.get(baseline)
    lines = [f"| run | method | options | lr | {accuracy.HEADER} | final | bytes up | bytes down | up vs baseline | "
             "down vs baseline | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in sorted(summaries.items()):
        up, down = s["bytes_pushed_total"], s["bytes_pulled_total"]
        options = ", ".join(f"{k}={v}" for k, v in s.get("method_options", {}).items())
        lines.append(f"| {name} | {s['method']} | {options} | {s['lr']:g} | {accuracy.cell(s)} | "
                     f"{s['final_test_acc']:.4f} | {up:,} | {down:,} | {_share(up, base, 'bytes_pushed_total')} | "
                     f"{_share(down, base, 'bytes_pulled_total')} | {s['wall_seconds']:.0f} |")
    return accuracy.with_footnote(lines, (accuracy.honest_accuracy(s)[1] for s in summaries.values()))


def report(directory: Path, readme: Path) -> str:
    """The table of the summaries in `directory`, written into `readme`'s block `methods table`."""
    text = table(read_summaries(Path(directory)))
    write_blocks(Path(readme), STUDY, {"table": text})
    return text
