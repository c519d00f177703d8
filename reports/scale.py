"""results/scale: the PS's time per step against the worker count, per method, from benchmarks/ps_step.py's
results.json (simulated workers: they push the method's payloads and do no training), as a table and a plot."""
from __future__ import annotations

from pathlib import Path

from reports.readme import read_json, write_blocks


def table(results: list[dict]) -> str:
    """Median and p90 of the PS's time per step, each method's growth from its smallest worker count to its largest."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    counts = sorted({r["workers"] for r in results})
    cell = {(r["method"], r["workers"]): r["ps"] for r in results}
    lines = ["| method | " + " | ".join(f"{n} workers: median (p90) ms" for n in counts) + f" | {counts[-1]} / {counts[0]} |",
             "|---|" + "---:|" * (len(counts) + 1)]
    for m in methods:
        cells = [f"{cell[m, n]['median_ms']:.1f} ({cell[m, n]['p90_ms']:.1f})" if (m, n) in cell else "—" for n in counts]
        grow = (cell[m, counts[-1]]["median_ms"] / cell[m, counts[0]]["median_ms"]
                if (m, counts[0]) in cell and (m, counts[-1]) in cell else None)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {'—' if grow is None else f'{grow:.1f}×'} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in dict.fromkeys(r["method"] for r in results):
        rows = sorted((r for r in results if r["method"] == m), key=lambda r: r["workers"])
        ax.errorbar([r["workers"] for r in rows], [r["ps"]["median_ms"] for r in rows],
                    yerr=[[0] * len(rows), [r["ps"]["p90_ms"] - r["ps"]["median_ms"] for r in rows]],
                    marker="o", capsize=3, label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("workers (simulated)")
    ax.set_ylabel("PS time per step, ms (median; bar to p90)")
    ax.set_title(f"{results[0]['model']}: the PS's time per step, one PS task")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(study: Path) -> str:
    results = read_json(study / "ps_step" / "results.json")["results"]
    body = table(results)
    write_blocks(study / "README.md", "scale", {"ps-step": body})
    plot(results, study / "ps_step.png")
    return body
