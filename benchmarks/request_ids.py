"""Why long runs stalled: TensorFlow's request ids collide, at the rate a birthday count predicts.

    python benchmarks/request_ids.py --calls 300000 --out results/reliability/request_ids.json

TensorFlow 2.21's master gives each partition of a session run a request id drawn on a thread started
for that run, from a generator seeded with 32 random bits; the worker service remembers the last
100,000 ids it took and refuses one it has seen ("The same RunGraph (Worker) request was received
twice"). So a call's chance to be refused is (ids remembered) / 2^32: it grows with every call until the
memory is full (100,000 calls), then stays at 100,000 / 2^32 = 2.3e-5. A run of the project's cluster
makes several such calls a step on each server (docs/reliability.md counts them).

This script measures it on one TensorFlow server of its own (127.0.0.1): `--calls` tiny session runs,
each on that server alone, every refusal counted with its call number, against the expected count
sum over calls of min(calls so far, 100,000) / 2^32. Prints progress; writes the record to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import tfstart  # noqa: F401,E402  (first: TensorFlow starts without Keras)

from helpers import provenance  # noqa: E402
from helpers.npzio import write_json  # noqa: E402

REMEMBERED = 100_000  # ids a TensorFlow 2.21 worker service keeps (its Worker's RecentRequestIds)
ID_SPACE = 2 ** 32    # distinct first ids: the generator of a new thread is seeded with 32 bits


def expected_refusals(calls: int) -> float:
    """The birthday count: each call collides with one of the ids remembered when it arrives."""
    full = max(0, calls - REMEMBERED)
    filling = min(calls, REMEMBERED)
    return (filling * (filling - 1) / 2 + full * REMEMBERED) / ID_SPACE


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=300_000, help="session runs to make")
    p.add_argument("--port", type=int, default=0, help="the server's port (0: a free one)")
    p.add_argument("--out", default="runs/request_ids.json", help="where the record goes")
    args = p.parse_args()

    import tensorflow as tf

    from runtime.cluster import free_ports

    tf.compat.v1.disable_eager_execution()
    port = args.port or free_ports(1)[0]
    server = tf.distribute.Server(tf.train.ClusterSpec({"worker": [f"127.0.0.1:{port}"]}), "worker", 0)
    with tf.device("/job:worker/task:0"):
        x = tf.compat.v1.placeholder(tf.float32, [])
        y = x + 1.0
    session = tf.compat.v1.Session(server.target)
    refused, started = [], time.monotonic()
    for call in range(args.calls):
        try:
            session.run(y, {x: 1.0})
        except tf.errors.AbortedError as e:
            if "received twice" not in (e.message or ""):
                raise
            refused.append(call)
            print(f"request_ids: call {call:,}: refused as a repeated request", flush=True)
        if (call + 1) % 20_000 == 0:
            print(f"request_ids: {call + 1:,} calls, {len(refused)} refused (expected {expected_refusals(call + 1):.2f}), "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    expected = expected_refusals(args.calls)
    # A Poisson count: the chance of seeing at most / at least what was seen, were the model right.
    cdf = sum(math.exp(-expected) * expected ** k / math.factorial(k) for k in range(len(refused) + 1))
    record = {"calls": args.calls, "refused_at": refused, "refused": len(refused), "expected": expected,
              "p_at_most_observed": cdf, "remembered_ids": REMEMBERED, "id_space": ID_SPACE,
              "seconds": time.monotonic() - started, "provenance": provenance.record(Path(args.out).parent)}
    out = Path(os.path.abspath(args.out))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, record)
    print(f"request_ids: {args.calls:,} calls, {len(refused)} refused, {expected:.2f} expected; wrote {out}", flush=True)


if __name__ == "__main__":
    main()
