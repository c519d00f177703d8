"""Run a whole MP² cluster on this machine: the PS (one task, or --ps N) and N workers as separate processes on 127.0.0.1.

    python mp2_local.py --workers 4 --model lenet5 --dataset fashion_mnist --method localsgd --epochs 30

The training flags (model, data, method and its options, epochs, lr, ...) are mp2_ps.py's: list them with
`python mp2_ps.py --help`, or read docs/usage.md (flags) and docs/methods.md (each method's options).

Every flag other than --workers, --ps, --out and --max-recoveries is passed to the PS and the workers as they
are; the PS-only ones (--predictor, --resume, --checkpoint-every, --snapshot-*) to the PS alone. Output lines
are prefixed [ps], [w0], ...; logs go to --out too. Paths mean what they mean in the caller's shell, from
whatever directory this is started.

A run that TensorFlow's runtime stalls or fails mid-way (the PS exits with runtime.exits.STALLED) is
resumed from its last checkpoint by itself, on fresh ports, up to --max-recoveries times; a process
killed from outside, or a failure that comes back at the same step, still stops the run.
"""
from helpers import tfstart  # noqa: F401  (first: TensorFlow starts without Keras)
import argparse
import os
import sys

from helpers import argtypes
from runtime import presets
from runtime.launcher import (ROOT, Child, LaunchError, LocalCluster, absolute_paths, finished_epochs,
                              import_tensorflow_quietly, make_dir)

# Flags whose values are paths: made absolute here, so no child can read them against another directory.
PATH_FLAGS = ("--predictor", "--snapshot-dir", "--data-dir")
# After its step timeout the PS names a dead worker; it then takes a few seconds to tell the others.
PS_REPORT_SECONDS = 10

parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--workers", type=argtypes.positive_int, default=4, help="number of worker processes")
parser.add_argument("--ps", type=argtypes.positive_int, default=1,
                    help="number of PS tasks; with several, the model's tensors are partitioned over them (every method: "
                         "docs/design/architecture.md)")
parser.add_argument("--out", default="runs/latest", help="run directory (PS outputs and each process's log)")
parser.add_argument("--max-recoveries", type=argtypes.nonnegative_int, default=5,
                    help="times a run stalled or failed by TensorFlow's runtime is resumed from its last checkpoint")
args, passthrough = parser.parse_known_args()
for flag in ("--ps_hosts", "--worker_hosts", "--task_index"):
    if any(a.split("=")[0] == flag for a in passthrough):
        sys.exit(f"mp2_local: error: {flag} is chosen by the launcher (free ports on 127.0.0.1); leave it out")
try:
    out = make_dir(args.out, "--out")
except LaunchError as e:
    print(f"mp2_local: error: {e}", file=sys.stderr)
    sys.exit(1)
passthrough = absolute_paths(passthrough, PATH_FLAGS)
if "--resume" in passthrough:  # a finished run: say so here, rather than start workers the PS never takes
    epochs_parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    epochs_parser.add_argument("--epochs", type=int, default=None)
    epochs_parser.add_argument("--preset", default=None)
    given = epochs_parser.parse_known_args(passthrough)[0]
    wanted = given.epochs or presets.EPOCHS.get(given.preset or presets.DEFAULT)  # a bad --preset: said below
    done = finished_epochs(out)
    if done is not None and wanted is not None and done >= wanted:
        print(f"[launcher] the run in {out} has already finished its {done} epochs; nothing to do "
              f"(raise --epochs to train on)", flush=True)
        sys.exit(0)

# Imported only now, quietly: TensorFlow prints start-up lines on import, which would bury the errors above.
import_tensorflow_quietly()
from runtime.cluster import free_ports  # noqa: E402
from runtime.flags import parser as training_parser  # noqa: E402
from runtime.cmdline import split  # noqa: E402

from data import DataError  # noqa: E402
from predictor import CheckpointError  # noqa: E402
from runtime.flags import precheck  # noqa: E402
from runtime.rundir import RunDir  # noqa: E402

try:  # a wrong model, pushed group, predictor file or method flag: said now, not after the cluster started
    precheck(passthrough + ["--out", str(out)], args.ps)
except (ValueError, DataError, CheckpointError) as e:
    print(f"mp2_local: error: {e}", file=sys.stderr)
    sys.exit(1)
step_timeout = training_parser("").parse_known_args(passthrough)[0].step_timeout



def launch(flags: list[str], env: dict[str, str]) -> LocalCluster:
    """Start the PS and the workers on free loopback ports (TensorFlow's gRPC server has no authentication)."""
    try:
        ports = free_ports(args.ps + args.workers)
    except ValueError as e:  # a malformed or full MP2_PORT_RANGE
        print(f"mp2_local: error: {e}", file=sys.stderr)
        sys.exit(1)
    ps_host = ",".join(f"127.0.0.1:{port}" for port in ports[:args.ps])
    worker_hosts = ",".join(f"127.0.0.1:{port}" for port in ports[args.ps:])
    cluster = ["--ps_hosts", ps_host, "--worker_hosts", worker_hosts, "--out", str(out)]
    # Children keep the caller's cwd and are started by the scripts' absolute paths. The first is PS task 0.
    ps_flags, worker_flags = split(flags)
    children = [Child("ps" if k == 0 else f"ps{k}", [str(ROOT / "mp2_ps.py"), *cluster, "--task_index", str(k), *ps_flags])
                for k in range(args.ps)]
    children += [
        Child(f"w{i}", [str(ROOT / "mp2_worker.py"), *cluster, "--task_index", str(i), *worker_flags])
        for i in range(args.workers)
    ]
    print(f"[launcher] PS at {ps_host}, workers at {worker_hosts}; run directory {out}", flush=True)
    local = LocalCluster(children, log_dir=out, ps_grace=step_timeout + PS_REPORT_SECONDS, env=env)
    try:
        local.start()
    except OSError as e:  # a log that cannot be opened: nothing has started yet
        print(f"mp2_local: error: cannot write the logs in {out} ({e.strerror or e}); choose another --out",
              file=sys.stderr)
        sys.exit(1)
    print("[launcher] pids: " + ", ".join(f"{c.name} {c.proc.pid}" for c in children), flush=True)
    return local


interruptions = RunDir(out).interruptions  # the stops the PS recorded there


env: dict[str, str] = {}
seen = len(interruptions())  # stops recorded before this launch (a run resumed by hand may have some)
for recovery in range(args.max_recoveries + 1):
    local = launch(passthrough, env)
    code = local.wait()
    if code == 0:
        print(f"[launcher] done; summary in {out / 'summary.json'}", flush=True)
        break
    if not local.resumable():
        break
    stops = interruptions()[seen:]  # the PS records each stop; a PS ended by its watchdog may not have
    if len(stops) > 1 and stops[-1]["step"] == stops[-2]["step"]:
        print(f"[launcher] the run failed twice at step {stops[-1]['step']}: not a passing stall; stopping "
              f"(see the logs in {out})", flush=True)
        break
    if recovery == args.max_recoveries:
        print(f"[launcher] the run stalled {recovery + 1} times; --max-recoveries {args.max_recoveries} reached",
              flush=True)
        break
    where = (f"at step {stops[-1]['step']} ({stops[-1]['cause']}); resuming from its checkpoint of step "
             f"{stops[-1]['resumes_after_step']}" if stops else "without a record (see ps.log); resuming from its "
             "last checkpoint")
    print(f"[launcher] recovery {recovery + 1}/{args.max_recoveries}: the run stopped {where}", flush=True)
    passthrough = [a for a in passthrough if a not in ("--fresh", "--resume")] + ["--resume"]
    # Faults injected by the tests (runtime/faults.py) belong to the first attempt, unless asked for in every one.
    if os.environ.get("MP2_INJECT_ABORT") and os.environ.get("MP2_INJECT_EVERY_ATTEMPT") != "1":
        env = {"MP2_INJECT_ABORT": ""}
sys.exit(code)
