"""Soak: the main job's cluster, many times in a row, optionally beside busy CPU loops.

    python benchmarks/soak.py --steps 100000 --epochs 30 --load 1     # results/reliability: 30-epoch runs
    python benchmarks/soak.py --runs 5 -- --method mp2 --predictor P   # other flags go to mp2_local.py

Each run is `mp2_local.py --workers 4` with the main job's flags (LeNet-5, Fashion-MNIST, lr 0.003, no
mixup, snapshots every 10 steps as the collection run takes them) into ROOT/run-NNN, seed NNN. The
launcher resumes a run that stalls by itself (a recovery); a run fails when the launcher exits
non-zero all the same, and its cause is read from the processes' logs (the lines that say "error").
Prints a line per run and, at the end, runs, steps, failures, hangs, recoveries, retried calls and each
cause; writes soak.json beside the runs after every run. `--runs` or `--steps` (whichever is reached
first) bounds the soak; `--load N` keeps N busy loops running beside the clusters, as on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers import provenance
from helpers.npzio import write_json

ROOT = Path(__file__).resolve().parent.parent

MAIN_JOB = ["--model", "lenet5", "--dataset", "fashion_mnist", "--method", "baseline", "--lr", "0.003",
            "--mixup", "0", "--snapshot-every", "10"]
ERROR_LINE = re.compile(r"\berror\b|Traceback|aborted|Aborted", re.IGNORECASE)


def busy_loop() -> None:
    while True:
        pass


def failure_cause(run_dir: Path, output: str) -> str:
    """The first lines that say what went wrong: each process's own error line, then the launcher's."""
    lines = []
    for log in sorted(run_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if ERROR_LINE.search(line) and not line.startswith("===="):
                lines.append(f"{log.stem}: {line.strip()}")
    lines += [line.strip() for line in output.splitlines() if line.startswith("[launcher]") and "error" in line]
    return " | ".join(lines[:6])[:2000] or "no error line in the logs; see " + str(run_dir)


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=50, help="at most this many runs")
    p.add_argument("--steps", type=int, default=0, help="stop once the runs so far did this many steps (0: --runs alone)")
    p.add_argument("--first-seed", type=int, default=0, help="the first run's seed (each run its own)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--load", type=int, default=0, help="busy loops beside the clusters (a shared machine)")
    p.add_argument("--root", default="runs/soak", help="where the runs and soak.json go")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one run may take before it counts as hung")
    p.add_argument("extra", nargs="*", help="more flags for mp2_local.py (after --)")
    args = p.parse_args()
    root = Path(os.path.abspath(args.root))
    root.mkdir(parents=True, exist_ok=True)

    loops = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(args.load)]
    for loop in loops:
        loop.start()
    results = []
    origin = provenance.record(root)

    def report() -> dict:  # written after every run: a soak cut short still leaves its record
        return {"runs": len(results), "failures": sum(r["exit"] != 0 for r in results), "planned": args.runs,
                "steps": sum(r.get("steps", 0) for r in results), "planned_steps": args.steps,
                "recoveries": sum(len(r.get("recoveries", [])) for r in results),
                "hangs": sum(r["exit"] == "hung" for r in results),
                "load": args.load, "epochs": args.epochs, "workers": args.workers, "extra": args.extra,
                "results": results, "provenance": origin}

    print(f"soak: {args.runs} runs of {args.workers} workers, {args.epochs} epochs, {args.load} busy loops beside; "
          f"runs in {root}", flush=True)
    try:
        for i in range(args.first_seed, args.first_seed + args.runs):
            if args.steps and sum(r.get("steps", 0) for r in results) >= args.steps:
                break
            run_dir = root / f"run-{i:03d}"
            command = [sys.executable, str(ROOT / "mp2_local.py"), "--workers", str(args.workers), *MAIN_JOB,
                       "--epochs", str(args.epochs), "--seed", str(i), "--out", str(run_dir), "--fresh", *args.extra]
            started = time.monotonic()
            try:
                done = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, timeout=args.timeout)
                code, output = done.returncode, done.stdout
            except subprocess.TimeoutExpired as e:
                code, output = "hung", (e.stdout or "") if isinstance(e.stdout, str) else ""
            seconds = time.monotonic() - started
            (run_dir / "launcher.out").write_text(output)
            result = {"run": i, "exit": code, "seconds": round(seconds, 1)}
            if code == 0:
                summary = json.loads((run_dir / "summary.json").read_text())
                result["final_test_acc"] = summary["final_test_acc"]
                result["steps"] = summary["steps"]
                result["recoveries"] = summary.get("recoveries", [])
                retries = sum(w.get("retries", 0) for r in _jsonl(run_dir / "metrics.jsonl") for w in r.get("workers", []))
                result["retries"] = retries + summary.get("refused_calls_rerun", 0)
            else:
                result["cause"] = failure_cause(run_dir, output)
                result["recoveries"] = _jsonl(run_dir / "interruptions.jsonl")
                result["steps"] = 0  # a failed run's steps are not counted toward the soak's
            results.append(result)
            write_json(root / "soak.json", report())
            failed = sum(r["exit"] != 0 for r in results)
            steps = sum(r.get("steps", 0) for r in results)
            recovered = "".join(f"\n      recovered: step {s['step']}: {s['cause']}" for s in result["recoveries"])
            print(f"soak: run {len(results)} (seed {i}): " + ("ok" if code == 0 else f"FAILED (exit {code})")
                  + f" in {seconds:.0f} s" + (f", retries {result['retries']}" if result.get("retries") else "")
                  + f"; steps so far {steps:,}, failures {failed}" + recovered
                  + (f"\n      cause: {result['cause']}" if code != 0 else ""), flush=True)
    finally:
        for loop in loops:
            loop.terminate()
    failures = [r for r in results if r["exit"] != 0]
    summary = report()
    print(f"soak: {summary['runs']} runs, {summary['steps']:,} steps, {len(failures)} failed ({summary['hangs']} hung), "
          f"{summary['recoveries']} recoveries, {sum(r.get('retries', 0) for r in results)} retried calls; "
          f"wrote {root / 'soak.json'}", flush=True)
    for r in results:
        for stop in r.get("recoveries", []):
            print(f"  run {r['run']}: recovered from a stop at step {stop['step']}: {stop['cause']}", flush=True)
    for r in failures:
        print(f"  run {r['run']}: exit {r['exit']}: {r['cause']}", flush=True)
    sys.exit(1 if failures else 0)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


if __name__ == "__main__":
    main()
