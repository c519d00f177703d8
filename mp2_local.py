"""Run a whole MP² cluster on this machine: one PS and N workers as separate processes on 127.0.0.1.

    python mp2_local.py --workers 4 --model lenet5 --dataset fashion_mnist --method baseline --epochs 5

Every flag other than --workers is passed to the PS and the workers as they are; the PS-only ones
(--predictor, --resume, --snapshot-*) to the PS alone. Output lines are prefixed [ps], [w0], ...; logs go to --out too.
"""
import argparse
import sys
from pathlib import Path

from runtime.cluster import free_ports
from runtime.flags import split_ps_only
from runtime.launcher import Child, LocalCluster

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--workers", type=int, default=4, help="number of worker processes")
parser.add_argument("--out", default="runs/latest", help="run directory (PS outputs and each process's log)")
args, passthrough = parser.parse_known_args()
if args.workers < 1:
    sys.exit("mp2_local: error: --workers must be at least 1")
for flag in ("--ps_hosts", "--worker_hosts", "--task_index"):
    if any(a.split("=")[0] == flag for a in passthrough):
        sys.exit(f"mp2_local: error: {flag} is chosen by the launcher (free ports on 127.0.0.1); leave it out")

# Loopback only: TensorFlow's gRPC server has no authentication.
ps_port, *worker_ports = free_ports(args.workers + 1)
ps_host = f"127.0.0.1:{ps_port}"
worker_hosts = ",".join(f"127.0.0.1:{port}" for port in worker_ports)
cluster = ["--ps_hosts", ps_host, "--worker_hosts", worker_hosts, "--out", args.out]


out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
children = [Child("ps", ["mp2_ps.py", *cluster, *passthrough])]
children += [
    Child(f"w{i}", ["mp2_worker.py", *cluster, "--task_index", str(i), *split_ps_only(passthrough)])
    for i in range(args.workers)
]
print(f"[launcher] PS at {ps_host}, workers at {worker_hosts}; run directory {out}", flush=True)
local = LocalCluster(children, log_dir=out)
local.start()
code = local.wait()
if code == 0:
    print(f"[launcher] done; summary in {out / 'summary.json'}", flush=True)
sys.exit(code)
