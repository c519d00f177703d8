"""Baseline vs MP² over a shaped link: step time and traffic on a local cluster behind a slow "NIC".

    sudo .venv/bin/python benchmarks/slow_network.py --rate 100mbit --epochs 1 --predictor P.npz

The whole cluster runs inside a private network namespace whose loopback is shaped with a token
bucket (tc tbf), so every byte between PS and workers crosses one link of --rate, as a PS's network
card would be shared (docs/design.md, "The runtime"). Needs root (ip netns, tc); without it, or with
--rate none, it runs unshaped and says so. Prints a table and writes benchmark.json to --out.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from predictor import Predictor, save_checkpoint  # noqa: E402
import models  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--rate", default="100mbit", help="link rate for tc tbf (e.g. 100mbit, 1gbit), or 'none'")
p.add_argument("--workers", type=int, default=4)
p.add_argument("--model", default="lenet5")
p.add_argument("--dataset", default="fashion_mnist")
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--predictor", help="MP² predictor checkpoint; default: an untrained one (timing does not depend on it)")
p.add_argument("--out", default="runs/bench-slow-network")
args, passthrough = p.parse_known_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

namespace = f"mp2bench{os.getpid()}"
shaped = args.rate != "none" and os.geteuid() == 0


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


if shaped:
    sh("ip", "netns", "add", namespace)
    sh("ip", "-n", namespace, "link", "set", "lo", "mtu", "1500")  # else packets exceed the burst
    sh("ip", "-n", namespace, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
       "rate", args.rate, "burst", "64kb", "latency", "100ms")
else:
    print(f"benchmark: running UNSHAPED ({'--rate none' if args.rate == 'none' else 'not root'})", flush=True)

predictor = args.predictor
if not predictor:
    model = models.get(args.model, 100 if args.dataset == "cifar100" else 10)
    predictor = str(out / "untrained-predictor.npz")
    save_checkpoint(predictor, model.layout, Predictor(model.layout, seed=0).numpy_weights(), {"note": "untrained"})

results = {}
try:
    for method in ("baseline", "mp2"):
        cmd = [sys.executable, "mp2_local.py", "--workers", str(args.workers), "--model", args.model,
               "--dataset", args.dataset, "--method", method, "--epochs", str(args.epochs),
               "--out", str(out / method), *passthrough]
        if method == "mp2":
            cmd += ["--predictor", predictor]
        if shaped:
            cmd = ["ip", "netns", "exec", namespace, *cmd]
        print(f"benchmark: {method} ...", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        summary = json.loads((out / method / "summary.json").read_text())
        records = [json.loads(line) for line in (out / method / "metrics.jsonl").read_text().splitlines()]
        steps = summary["steps"]
        results[method] = {
            "wall_seconds": summary["wall_seconds"],
            "step_ms": 1000 * sum(r["step_seconds"] for r in records) / len(records) / (steps / args.epochs),
            "comm_ms": 1000 * sum(r["comm_seconds"] for r in records) / len(records) / (steps / args.epochs),
            "pushed_kb_per_step": summary["bytes_pushed_total"] / (steps * summary["workers"]) / 1e3,
            "pulled_kb_per_step": summary["bytes_pulled_total"] / (steps * summary["workers"]) / 1e3,
            "best_test_acc": summary["best_test_acc"],
        }
finally:
    if shaped:
        subprocess.run(["ip", "netns", "del", namespace])

report = {"rate": args.rate if shaped else "unshaped", "workers": args.workers, "model": args.model,
          "dataset": args.dataset, "epochs": args.epochs, "results": results}
(out / "benchmark.json").write_text(json.dumps(report, indent=1) + "\n")
print(f"\n{args.model}/{args.dataset}, {args.workers} workers, link {report['rate']}")
print(f"{'method':10} {'step ms':>9} {'comm ms':>9} {'push KB':>9} {'pull KB':>9} {'wall s':>8}")
for method, r in results.items():
    print(f"{method:10} {r['step_ms']:9.1f} {r['comm_ms']:9.1f} {r['pushed_kb_per_step']:9.1f} "
          f"{r['pulled_kb_per_step']:9.1f} {r['wall_seconds']:8.1f}")
if "baseline" in results and "mp2" in results:
    speedup = 1 - results["mp2"]["wall_seconds"] / results["baseline"]["wall_seconds"]
    print(f"MP² wall time {speedup:+.1%} shorter than baseline" if speedup > 0 else
          f"MP² wall time {-speedup:.1%} longer than baseline")
