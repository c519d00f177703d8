"""Online MP² against the baseline over several seeds, as markdown: per seed the best test accuracy
(the issue's figure), the last epoch's, and the mean of the last three (less at the mercy of one lucky
evaluation), then the means over seeds.

    python results/unseen/seeds.py BASELINE_DIR:MP2_DIR[:CONTROL_DIR] [...]   (one pair per seed)
"""
import json
import sys
from pathlib import Path


def figures(run: str) -> dict:
    s = json.loads((Path(run) / "summary.json").read_text())
    curve = s["test_acc_by_epoch"]
    return {"best": s["best_test_acc"], "final": curve[-1], "last3": sum(curve[-3:]) / 3,
            "bytes": s["bytes_pushed_total"]}


rows = []
for pair in sys.argv[1:]:
    base, mp2, *control = pair.split(":")
    rows.append((Path(mp2).name, figures(base), figures(mp2), figures(control[0]) if control else None))

print("| MP² run | baseline best / final / last-3 mean | MP² best / final / last-3 mean | best: MP² − baseline | pushed | control best |")
print("|---|---|---|---|---|---|")
for name, b, m, c in rows:
    control = f"{c['best']:.4f}" if c else "–"
    print(f"| {name} | {b['best']:.4f} / {b['final']:.4f} / {b['last3']:.4f} | {m['best']:.4f} / {m['final']:.4f} / "
          f"{m['last3']:.4f} | {100 * (m['best'] - b['best']):+.2f} | {100 * m['bytes'] / b['bytes']:.1f} % | {control} |")
mean = lambda key, side: sum(r[side][key] for r in rows) / len(rows)  # noqa: E731
print(f"| **mean of {len(rows)}** | {mean('best', 1):.4f} / {mean('final', 1):.4f} / {mean('last3', 1):.4f} | "
      f"{mean('best', 2):.4f} / {mean('final', 2):.4f} / {mean('last3', 2):.4f} | "
      f"{100 * (mean('best', 2) - mean('best', 1)):+.2f} | {100 * mean('bytes', 2) / mean('bytes', 1):.1f} % | |")
