"""Markdown table of the runs under a directory (one summary.json each): python results/methods/table.py runs/methods"""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1])
runs = sorted(p.parent for p in root.glob("*/summary.json"))
base = next((json.loads((r / "summary.json").read_text()) for r in runs if r.name == "baseline"), None)
print(f"Runs in `{root}` (LeNet-5, real Fashion-MNIST, 4 workers, 10 epochs; command: `bash results/methods/run.sh`).\n")
print("| run | method | options | lr | best test acc | final | bytes up | bytes down | up vs baseline | down vs baseline | wall s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for run in runs:
    s = json.loads((run / "summary.json").read_text())
    up, down = s["bytes_pushed_total"], s["bytes_pulled_total"]
    rel = (lambda a, b: f"{100 * a / b:.2f} %") if base else (lambda a, b: "")
    opts = ", ".join(f"{k}={v}" for k, v in s.get("method_options", {}).items())
    print(f"| {run.name} | {s['method']} | {opts} | {s['lr']:g} | {s['best_test_acc']:.4f} | {s['final_test_acc']:.4f} | "
          f"{up:,} | {down:,} | {rel(up, base['bytes_pushed_total']) if base else ''} | "
          f"{rel(down, base['bytes_pulled_total']) if base else ''} | {s['wall_seconds']:.0f} |")
