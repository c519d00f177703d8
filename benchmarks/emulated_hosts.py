"""Emulated hosts for the network benchmark: the PS and each worker in a network namespace of its own,
each cabled by a veth pair to a switch (a bridge in one more namespace), both ends of every cable
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
PS_ADDRESS = f"{SUBNET}.1"
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
    """The namespaces and cables of one run: a switch, the PS and `workers` hosts."""
    prefix: str
    workers: int
    rate: str
    delay: str | None = None

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    @property
    def hosts(self) -> list[str]:
        return [f"{self.prefix}ps", *(f"{self.prefix}w{i}" for i in range(self.workers))]

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *self.hosts]

    def address(self, host_index: int) -> str:
        """Host 0 is the PS (.1); worker i is .(10 + i)."""
        return PS_ADDRESS if host_index == 0 else f"{SUBNET}.{9 + host_index}"

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
