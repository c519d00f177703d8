"""Print the figures of the results/unseen runs as markdown: best test accuracy, pushed bytes and their
share of the baseline's, the switch step, full steps, predictor rounds and the barrier's stall.

    python results/unseen/summarize.py BASELINE_DIR RUN_DIR [RUN_DIR ...]
"""
import json
import sys
from pathlib import Path


def row(run: Path, baseline: dict) -> str:
    s = json.loads((run / "summary.json").read_text())
    online = s.get("method_stats", {}).get("online", {})
    switch = next((e["step"] for e in online.get("events", []) if e["event"] == "switch to mp2"), "")
    share = s["bytes_pushed_total"] / baseline["bytes_pushed_total"]
    return (f"| {run.name} | {s['best_test_acc']:.4f} | {100 * (s['best_test_acc'] - baseline['best_test_acc']):+.2f} | "
            f"{s['bytes_pushed_total'] / 1e6:.1f} MB | {100 * share:.1f} % | {s['steps'] if s['method'] == 'baseline' else s['phases'].get('full', 0)} of {s['steps']} | "
            f"{switch} | {online.get('rounds', '')} | {online.get('stalled_seconds', '')} |")


base_dir, *runs = (Path(a) for a in sys.argv[1:])
baseline = json.loads((base_dir / "summary.json").read_text())
print("| run | best test acc | vs baseline (points) | pushed | of baseline's | full steps | switch step | rounds | barrier held (s) |")
print("|---|---|---|---|---|---|---|---|---|")
for run in [base_dir, *runs]:
    print(row(run, baseline))
