"""Emulated hosts for the network benchmark: the PS (each PS task) and each worker in a network namespace of
its own, each cabled by a veth pair to a switch (a bridge in one more namespace), both ends of every cable
shaped with tc (tbf at a rate, netem for a delay), and the interface counters of a host's card.

Needs root (ip netns, tc). Every namespace made is deleted on every way out of `emulated_hosts`.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

# Addresses inside the namespaces this module creates, and nowhere else.
SUBNET = "10.213.0"
PS_ADDRESS = f"{SUBNET}.1"  # PS task 0; task k is .(1 + k)
FIRST_WORKER = 10  # worker i is .(10 + i)
MAX_PS_TASKS = FIRST_WORKER - 1
MAX_WORKERS = 254 - FIRST_WORKER + 1
HOST_IF = "eth0"  # the host's end of its cable, inside its own namespace
UNSHAPED = "unshaped"  # the rate of a cable tc leaves alone


class SetupError(Exception):
    """A set-up command failed; the message is the command and what it said."""


def rate_bits(rate: str) -> int:
    """A tc rate ('100mbit', '1gbit', '500kbit', '2000000bit') in bits per second; ValueError if it is none."""
    units = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}
    for unit, scale in units.items():
        number = rate.lower().removesuffix(unit)
        if number != rate.lower():
            try:
                value = float(number)
            except ValueError:
                break
            if value > 0:
                return int(value * scale)
            break
    raise ValueError(f"rate {rate!r} is not a tc rate such as 100mbit or 1gbit (or {UNSHAPED!r})")


def in_namespace(namespace: str) -> list[str]:
    """The prefix that runs a command inside `namespace`."""
    return ["ip", "netns", "exec", namespace]


def shaping_commands(namespace: str, device: str, rate: str, delay: str | None) -> list[list[str]]:
    """tc commands shaping the egress of `device` in `namespace`: tbf at `rate`, netem `delay` in front."""
    if rate == UNSHAPED and not delay:
        return []
    tc = [*in_namespace(namespace), "tc", "qdisc", "add", "dev", device]
    commands, parent = [], ["root"]
    if delay:
        commands.append([*tc, "root", "handle", "1:", "netem", "delay", delay])
        parent = ["parent", "1:"]
    if rate != UNSHAPED:
        # A burst of at least 1 ms of traffic, so a 64 KB segment-offloaded packet always fits.
        burst = max(64 * 1024, rate_bits(rate) // 8 // 1000)
        commands.append([*tc, *parent, "handle", "2:", "tbf", "rate", rate, "burst", str(burst), "latency", "100ms"])
    return commands


@dataclass
class Topology:
    """The namespaces and cables of one run: a switch, the PS task(s) and `workers` hosts.

    Hosts in order: PS task 0 (`PREFIXps`, .1), PS tasks 1.. (`PREFIXps1`, .2, ...), then the workers
    (`PREFIXw0`, .10, ...). With one PS task (the default) that is the PS, then the workers, as before."""
    prefix: str
    workers: int
    rate: str
    delay: str | None = None
    ps_tasks: int = 1  # each PS task on a host of its own, with its own cable

    def __post_init__(self) -> None:
        if not 1 <= self.ps_tasks <= MAX_PS_TASKS:
            raise ValueError(f"{self.ps_tasks} PS tasks: the emulated hosts have addresses for 1 to {MAX_PS_TASKS}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"{self.workers} workers: the emulated hosts have addresses for 0 to {MAX_WORKERS}")

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    @property
    def ps_hosts(self) -> list[str]:
        """PS task k's namespace: task 0's is `PREFIXps` (the one PS of a one-task run), task k's `PREFIXps{k}`."""
        return [f"{self.prefix}ps{k or ''}" for k in range(self.ps_tasks)]

    @property
    def worker_hosts(self) -> list[str]:
        return [f"{self.prefix}w{i}" for i in range(self.workers)]

    @property
    def hosts(self) -> list[str]:
        return [*self.ps_hosts, *self.worker_hosts]

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *self.hosts]

    def address(self, host_index: int) -> str:
        """The address of hosts[host_index]: PS task k is .(1 + k); worker i is .(10 + i)."""
        if not 0 <= host_index < self.ps_tasks + self.workers:
            raise IndexError(f"host {host_index} of {self.ps_tasks + self.workers}")
        if host_index < self.ps_tasks:
            return self.ps_address(host_index)
        return self.worker_address(host_index - self.ps_tasks)

    def ps_address(self, task: int) -> str:
        return PS_ADDRESS if task == 0 else f"{SUBNET}.{1 + task}"

    def worker_address(self, index: int) -> str:
        return f"{SUBNET}.{FIRST_WORKER + index}"

    def setup_steps(self) -> Iterator[tuple[str | None, list[list[str]]]]:
        """(namespace this step creates or None, its commands), in order; cleanup deletes those created."""
        yield self.switch, [["ip", "netns", "add", self.switch]]
        yield None, [["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"],
                     ["ip", "-n", self.switch, "link", "set", "br0", "up"]]
        for index, host in enumerate(self.hosts):
            port = f"p{index}"  # the switch's end of this host's cable
            yield host, [["ip", "netns", "add", host]]
            yield None, [
                ["ip", "link", "add", HOST_IF, "netns", host, "type", "veth", "peer", "name", port, "netns", self.switch],
                ["ip", "-n", self.switch, "link", "set", port, "master", "br0"],
                ["ip", "-n", self.switch, "link", "set", port, "up"],
                ["ip", "-n", host, "addr", "add", f"{self.address(index)}/24", "dev", HOST_IF],
                ["ip", "-n", host, "link", "set", "lo", "up"],
                ["ip", "-n", host, "link", "set", HOST_IF, "up"],
                # host -> switch is what the host sends; switch -> host what it receives.
                *shaping_commands(host, HOST_IF, self.rate, self.delay),
                *shaping_commands(self.switch, port, self.rate, self.delay),
            ]


Runner = Callable[[list[str]], None]


def run_checked(command: list[str]) -> None:
    """Run one set-up command; SetupError with its own message if it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()}")


def delete_namespaces(names: Sequence[str], runner: Runner) -> list[str]:
    """Delete every namespace named, the last created first; the errors, if any (never raises)."""
    errors = []
    for name in reversed(names):
        try:
            runner(["ip", "netns", "del", name])
        except Exception as e:  # noqa: BLE001 - cleanup goes on whatever one deletion says
            errors.append(f"{name}: {e}")
    return errors


@contextlib.contextmanager
def emulated_hosts(topology: Topology, runner: Runner = run_checked, log: list | None = None) -> Iterator[Topology]:
    """The topology built for the duration of the block; every namespace created is deleted on
    every way out (a failing set-up command, an exception or a signal in the block)."""
    created: list[str] = []
    try:
        for namespace, commands in topology.setup_steps():
            if namespace:
                created.append(namespace)  # before the command: a half-made namespace is deleted too
            for command in commands:
                if log is not None:
                    log.append(command)
                runner(command)
        yield topology
    finally:
        errors = delete_namespaces(created, runner)
        if errors:
            print(f"benchmark: warning: could not delete namespaces: {'; '.join(errors)}", file=sys.stderr, flush=True)


def link_counters(namespace: str, device: str = HOST_IF) -> dict[str, int]:
    """The interface counters of `device` in `namespace`: rx/tx bytes and packets."""
    names = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
    done = subprocess.run([*in_namespace(namespace), "cat", *(f"/sys/class/net/{device}/statistics/{n}" for n in names)],
                          capture_output=True, text=True, check=True)
    return dict(zip(names, (int(v) for v in done.stdout.split())))


def port_counters(topology: Topology) -> dict[str, dict[str, int]]:
    """Every host's cable as the switch sees it, read in one command: {host: {"sent", "received"}} in bytes
    (the switch port's rx is what the host sent, its tx what the host received)."""
    files = [f"/sys/class/net/p{index}/statistics/{name}" for index in range(len(topology.hosts))
             for name in ("rx_bytes", "tx_bytes")]
    done = subprocess.run([*in_namespace(topology.switch), "cat", *files], capture_output=True, text=True, check=True)
    values = [int(v) for v in done.stdout.split()]
    return {host: {"sent": values[2 * i], "received": values[2 * i + 1]} for i, host in enumerate(topology.hosts)}
