"""The global model partitioned over the PS tasks (`--ps_hosts a,b,…`): which task holds which tensors.

Each PS task holds a contiguous run of the layout's tensors, every tensor whole on one task, the runs chosen
so that the largest task's bytes are as small as they can be (an exact search over the cut points, so the
partition follows from the layout and the task count alone: every process computes the same one, and the
handshake compares the count). Contiguous runs keep a shard a slice of the flat model vector and a run of the
layout's tensors, so a payload's piece needs no index list on the wire.

A method whose PS update is per tensor (`Method.shardable`) is built once per piece, as the method over the piece's
tensors (`Method.for_part`) on that piece's device; a worker cuts its payload into the pieces' (`Method.split`) and
joins their replies (`Method.join`), and the run ends in the one-PS model bit for bit. MP²'s prediction reads the
whole pushed group and writes the predicted one, and the WNN's nowcaster runs over the whole model: they build their
pieces together (`Method.build_pieces`, `Whole`): each piece averages its slice where the workers' payloads arrive,
the update runs on task 0 over the averages, and each piece is written its slice (docs/design/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from models import Layout
from runtime.cluster import ps_device
from runtime.methods import shardable_methods


@dataclass(frozen=True)
class Shard:
    index: int      # the PS task that holds it
    start: int      # its slice of the flat model vector
    end: int
    layout: Layout  # its tensors, in layout order

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def device(self) -> str:
        return ps_device(self.index)


def partition(layout: Layout, tasks: int) -> list[Shard]:
    """`layout`'s tensors in `tasks` contiguous runs of the least possible largest size (ties: the earliest cuts).

    ValueError when there are more tasks than tensors (a task would hold nothing)."""
    sizes = [p.size for p in layout.params]
    n = len(sizes)
    if not 1 <= tasks <= n:
        raise ValueError(f"{tasks} PS tasks for {layout.model}'s {n} tensors: every PS task holds at least one whole "
                         f"tensor; give at most {n} addresses in --ps_hosts")
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    # best[j][i]: the least largest run when the first i tensors go to j tasks; cut[j][i] the start of the last run.
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(tasks + 1)]
    cut = [[0] * (n + 1) for _ in range(tasks + 1)]
    best[0][0] = 0
    for j in range(1, tasks + 1):
        for i in range(j, n - (tasks - j) + 1):
            for c in range(j - 1, i):
                cost = max(best[j - 1][c], prefix[i] - prefix[c])
                if cost < best[j][i]:
                    best[j][i], cut[j][i] = cost, c
    bounds, i = [], n
    for j in range(tasks, 0, -1):
        bounds.append((cut[j][i], i))
        i = cut[j][i]
    shards = []
    for k, (a, b) in enumerate(reversed(bounds)):
        shards.append(Shard(k, prefix[a], prefix[b], Layout(layout.model, layout.classes, layout.params[a:b])))
    return shards


def plan(layout: Layout, method, tasks: int, chunks: int = 1) -> list[Shard]:
    """The pieces of an exchange in a run over `tasks` PS tasks, each task's part cut into `chunks` pieces (the same
    search within the task's tensors): task by task, in layout order. ValueError in one line when `method` (a
    Method) cannot shard, or a task or a piece would hold no tensor."""
    if (tasks > 1 or chunks > 1) and not method.shardable:
        raise ValueError(not_shardable(method.name))
    shards = partition(layout, tasks)
    if chunks == 1:
        return shards
    pieces = []
    for shard in shards:
        if chunks > len(shard.layout.params):
            raise ValueError(f"--chunks {chunks}: PS task {shard.index} holds {len(shard.layout.params)} of "
                             f"{layout.model}'s tensors, and a piece holds at least one whole tensor: give at most "
                             f"{min(len(s.layout.params) for s in shards)}")
        pieces += [Shard(shard.index, shard.start + c.start, shard.start + c.end, c.layout)
                   for c in partition(shard.layout, chunks)]
    return pieces


def chunked(shards: list[Shard]) -> bool:
    """Whether some PS task takes its part of an exchange in several pieces (sent in turn, replied to in turn)."""
    return len({s.index for s in shards}) < len(shards)


def describe(shards: list[Shard]) -> str:
    """One line: each task's tensors and share of the model (and its pieces), for the PS's log."""
    total = sum(s.size for s in shards)
    tasks = sorted({s.index for s in shards})
    out = []
    for task in tasks:
        own = [s for s in shards if s.index == task]
        size = sum(s.size for s in own)
        pieces = f", {len(own)} pieces" if len(own) > 1 else ""
        out.append(f"task {task}: {own[0].layout.params[0].name}..{own[-1].layout.params[-1].name} "
                   f"({4 * size:,} B, {size / total:.0%}{pieces})")
    return "; ".join(out)


def not_shardable(method: str) -> str:
    """Why `method` refuses several PS tasks, in one line."""
    return (f"--method {method} runs on one PS task in one piece (its PS update needs the whole model in one place): "
            f"give one address in --ps_hosts and no --chunks; the methods that shard are {', '.join(shardable_methods())}")
