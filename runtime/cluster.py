"""Cluster flags (--ps_hosts, --worker_hosts, --task_index or TF_CONFIG), servers and sessions."""
from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import time
from dataclasses import dataclass

import tensorflow as tf

def ps_device(task: int) -> str:
    """The device of PS task `task` (several: --ps_hosts a,b,…; runtime/shards.py)."""
    return f"/job:ps/task:{task}"


PS_DEVICE = ps_device(0)  # task 0: the one that drives the run, and holds the queues outside the step
RPC_CHANNELS = 4  # gRPC connections a process keeps to each peer (measured: results/scale/hosts/duplex-probe)
GRPC_OPTIONS_ENV = "TF_GRPC_DEFAULT_OPTIONS"  # TensorFlow's own: name=value gRPC channel arguments, comma-separated


class ClusterError(Exception):
    """A cluster that cannot be formed: bad addresses, a port in use, a peer that never came."""


@dataclass(frozen=True)
class Cluster:
    ps: tuple[str, ...]
    workers: tuple[str, ...]

    def spec(self) -> tf.train.ClusterSpec:
        return tf.train.ClusterSpec({"ps": list(self.ps), "worker": list(self.workers)})


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster (as in TensorFlow's distributed examples; else TF_CONFIG)")
    g.add_argument("--ps_hosts", help="comma-separated host:port of every PS task, e.g. 10.0.0.1:2222; with several, the model's "
                   "tensors are partitioned over them (task 0 drives the run; runtime/shards.py)%(default).0s")
    g.add_argument("--worker_hosts", help="comma-separated host:port of every worker, in task order%(default).0s")
    g.add_argument("--task_index", type=int, help="this process's index in its job (workers: 0..N-1; PS tasks: 0..P-1, "
                   "default 0)%(default).0s")


def resolve(args: argparse.Namespace, job: str) -> tuple[Cluster, int]:
    """The cluster and this process's task index, from the flags or else from TF_CONFIG."""
    ps, workers, index = args.ps_hosts, args.worker_hosts, args.task_index
    if not (ps and workers) and os.environ.get("TF_CONFIG"):
        try:
            conf = json.loads(os.environ["TF_CONFIG"])
            ps = ps or ",".join(conf["cluster"]["ps"])
            workers = workers or ",".join(conf["cluster"]["worker"])
            task = conf.get("task", {})
            if index is None and task.get("type") == job:
                index = int(task.get("index", 0))
        except (ValueError, KeyError, TypeError) as e:
            raise ClusterError(f"TF_CONFIG is not usable ({e!r}); it needs cluster.ps and cluster.worker")
    if not ps or not workers:
        raise ClusterError("no cluster given: pass --ps_hosts and --worker_hosts (or set TF_CONFIG)")
    cluster = Cluster(_hosts(ps, "--ps_hosts"), _hosts(workers, "--worker_hosts"))
    index = 0 if index is None and job == "ps" else index
    if index is None:
        raise ClusterError("a worker needs --task_index (0..N-1)")
    size = len(cluster.ps) if job == "ps" else len(cluster.workers)
    if not 0 <= index < size:
        raise ClusterError(f"--task_index {index} is outside 0..{size - 1} for the {size} {job} host(s) given")
    return cluster, index


def _hosts(text: str, flag: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in text.split(",") if h.strip())
    for h in hosts:
        host, _, port = h.rpartition(":")
        if not host or not port.isdigit():
            raise ClusterError(f"{flag}: {h!r} is not host:port")
        if host == "localhost":
            # TensorFlow 2.21's gRPC runtime was seen refusing peers addressed as localhost.
            raise ClusterError(f"{flag}: write 127.0.0.1 instead of localhost in {h!r}")
    if len(set(hosts)) != len(hosts):
        raise ClusterError(f"{flag}: the same address appears twice in {text!r}")
    return hosts


def start_server(cluster: Cluster, job: str, index: int, threads: int) -> tf.distribute.Server:
    """Start this process's gRPC server; a port in use is reported as such, not as a TF trace.

    The server, not the session, owns the pool that runs this task's ops (a session on a server target
    leaves it as it is), so `threads` (--threads; 0: TensorFlow decides) sizes it here. On 2 cores, one
    thread per op (the default) instead of both let a local cluster of five processes train LeNet-5's
    baseline in 33–38 s instead of 38–47, and online MP²'s first round in about half the time
    (results/online-rounds). The pool that schedules ops beside each other stays TensorFlow's choice:
    a queue op waiting for a worker must not hold the only thread.
    """
    address = (cluster.ps if job == "ps" else cluster.workers)[index]
    port = int(address.rpartition(":")[2])
    if port_in_use(port):
        raise ClusterError(
            f"port {port} ({job} {index} at {address}) is already in use — is an earlier run "
            f"still alive? Stop it, or choose another port in --{job}_hosts"
        )
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads)
    # Several gRPC connections to each peer, each its own TCP connection (a channel of its own subchannel pool;
    # read by TensorFlow when it makes its first channel): a session run's answer (what releases a worker's next
    # piece with --chunks) need not wait in one socket behind megabytes of reply (results/scale/hosts/duplex-probe).
    config.rpc_options.num_channels_per_target = RPC_CHANNELS
    options = [o for o in os.environ.get(GRPC_OPTIONS_ENV, "").split(",") if o]
    if not any(o.startswith("grpc.use_local_subchannel_pool=") for o in options):
        os.environ[GRPC_OPTIONS_ENV] = ",".join([*options, "grpc.use_local_subchannel_pool=1"])
    return tf.distribute.Server(cluster.spec(), job_name=job, task_index=index, start=True, config=config)


def devices() -> list[str]:
    """The devices TensorFlow sees in this process ("CPU", "GPU:0", ...): a worker's training runs on its first GPU
    when it has one (TensorFlow places an op whose device names no type on a GPU if it has a GPU kernel), else on
    its CPU; the PS's variables stay on the PS's host either way."""
    found = tf.config.list_physical_devices()
    gpus = [d for d in found if d.device_type == "GPU"]
    return ["CPU", *(f"GPU:{i}" for i in range(len(gpus)))]


def port_in_use(port: int) -> bool:
    """Whether something listens on TCP `port`.

    SO_REUSEADDR, as gRPC's own server sets it: a port whose last connection lingers in TIME-WAIT
    after a run is free to listen on again; only a listening socket makes the bind fail.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("", port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return True
        raise
    finally:
        probe.close()
    return False


def session(server: tf.distribute.Server, job: str, index: int, threads: int) -> tf.compat.v1.Session:
    """A session that only ever contacts the PS tasks and this task, so starting peers cannot stall it (a PS task
    other than 0 only hosts its shard: it contacts task 0 and itself)."""
    if job == "ps":
        filters = ["/job:ps"] if index == 0 else [PS_DEVICE, f"/job:ps/task:{index}"]
    else:
        filters = ["/job:ps", f"/job:worker/task:{index}"]
    config = tf.compat.v1.ConfigProto(
        device_filters=filters,
        intra_op_parallelism_threads=threads,
        inter_op_parallelism_threads=threads,
    )
    return tf.compat.v1.Session(server.target, config=config)


def reachable(address: str) -> bool:
    """Whether something accepts TCP connections at `address` now (a PS task that died does not)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def wait_for_port(address: str, timeout: float, what: str) -> None:
    """Block until `address` accepts TCP connections.

    A session.run against a task that is not up yet blocks without honouring its deadline, so a
    worker first waits here for the PS's port, which has a deadline of its own.
    """
    deadline = time.monotonic() + timeout
    while not reachable(address):
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} at {address} did not come up within {timeout:.0f} s "
                               f"(start it, or raise --connect-timeout)")
        time.sleep(0.5)


def gone_ps_tasks(addresses: tuple[str, ...], among: set[int] | None = None) -> list[int]:
    """The PS tasks 1.. (of `among`, if given) whose port no longer accepts connections: a task that died."""
    return [k for k in range(1, len(addresses)) if (among is None or k in among) and not reachable(addresses[k])]


# Ports for a local cluster come from the kernel's ephemeral range unless this names another, LO-HI: a range
# a firewall opens, or (the test suite) one range per parallel test runner, so that two launchers running
# side by side never pick the same port in the seconds before their servers bind it.
PORT_RANGE_ENV = "MP2_PORT_RANGE"


def port_range_from_env() -> range | None:
    """The range MP2_PORT_RANGE names, or None when it is unset. ValueError, in one line, when malformed."""
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not text:
        return None
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        low = high = 0
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{PORT_RANGE_ENV}={text!r}: expected LO-HI, two ports 1024..65535 with LO <= HI "
                         f"(e.g. 20000-20999), or leave it unset for the kernel's choice")
    return range(low, high + 1)


def free_ports(n: int, ports: range | None = None) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that nothing listens on right now: from `ports`, else from
    MP2_PORT_RANGE, else the kernel's choice. All sockets stay bound until every port is chosen, so no
    port is handed out twice. ValueError when the range holds fewer than `n` free ports."""
    ports = ports if ports is not None else port_range_from_env()
    socks: list[socket.socket] = []
    try:
        if ports is None:
            for _ in range(n):
                socks.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                socks[-1].bind(("127.0.0.1", 0))
        else:
            start = int.from_bytes(os.urandom(4), "little") % len(ports)  # two callers rarely start alike
            for k in range(len(ports)):
                if len(socks) == n:
                    break
                candidate = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    candidate.bind(("127.0.0.1", ports[(start + k) % len(ports)]))
                except OSError:
                    candidate.close()
                    continue
                socks.append(candidate)
            if len(socks) < n:
                raise ValueError(f"only {len(socks)} of the {n} ports needed are free in "
                                 f"{ports.start}-{ports.stop - 1}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def exit_now(code: int, message: str | None = None) -> None:
    """End the process at once, skipping interpreter teardown.

    Closing a session whose peer is gone blocks inside TensorFlow (it tries to release the remote
    worker session), so a process that must stop because its peer vanished would hang at exit.
    """
    if message:
        print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
