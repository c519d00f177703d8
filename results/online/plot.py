"""Plot a run's test accuracy and cumulative pushed bytes against steps, with online MP²'s events marked.

    python results/online/plot.py RUN_DIR [BASELINE_RUN_DIR] --out results/online/curve.png

Reads RUN_DIR/metrics.jsonl (one record per epoch, with its phases and events) and summary.json.
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(run: Path) -> tuple[list[int], list[float], list[float], list[dict]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps, acc, pushed, events, total, done = [], [], [], [], 0, 0
    for r in records:
        done += sum(r["phases"].values())
        total += r["bytes_pushed"]
        steps.append(done)
        acc.append(r["test_acc"])
        pushed.append(total / 1e6)
        events += r.get("events", [])
    return steps, acc, pushed, events


p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("run", type=Path)
p.add_argument("baseline", type=Path, nargs="?")
p.add_argument("--out", type=Path, default=Path("results/online/curve.png"))
args = p.parse_args()

fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
runs = [(args.run, "online MP²")] + ([(args.baseline, "baseline")] if args.baseline else [])
for run, label in runs:
    steps, acc, pushed, events = curve(run)
    top.plot(steps, acc, marker="o", label=label)
    bottom.plot(steps, pushed, marker="o", label=label)
    switched = False
    for e in events if label == "online MP²" else []:
        colour = {"switch to mp2": "green", "fallback to full pushes": "red"}.get(e["event"])
        if e["event"] == "trained" and e.get("passed") and switched:
            colour = "blue"  # a later round replaced the live predictor
        switched = switched or e["event"] == "switch to mp2"
        if colour:
            for ax in (top, bottom):
                ax.axvline(e["step"], color=colour, alpha=0.4, linestyle="--")
top.set_ylabel("test accuracy (per epoch)")
bottom.set_ylabel("cumulative bytes pushed (MB)")
bottom.set_xlabel("step (green: switch to MP², blue: a round replaced the predictor, red: back to full pushes)")
top.legend()
top.grid(alpha=0.3)
bottom.grid(alpha=0.3)
fig.suptitle(f"{args.run.name}: accuracy and traffic against steps")
fig.tight_layout()
args.out.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out}")
