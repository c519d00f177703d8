"""Several PS tasks (runtime/shards.py, runtime/ps_tasks.py): the partition, and real clusters of two PS tasks that end
in the one-PS model bit for bit, resume exactly, refuse another partition by name and stop when a PS task dies."""
from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import models
from helpers import npzio
from models import Layout, ParamSpec
from runtime.config import RunConfig
from runtime.methods import METHODS, RunInfo, shardable_methods
from runtime.shards import chunked, partition, plan
from tests.cluster import SMALL, built_once, cluster_flags, read_jsonl, run, run_together, start

CONTROL_BYTES = 16  # the control word every PS task's reply ends with (int64 [2])


def _layout(sizes: list[int]) -> Layout:
    return Layout("toy", 10, tuple(ParamSpec(f"l{i}/w", (s,), "pushed", f"l{i}", "dense") for i, s in enumerate(sizes)))


# --- the partition ------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("seed", range(6))
def test_the_partition_is_contiguous_whole_and_its_largest_task_as_small_as_any_cut_allows(seed):
    sizes = list(np.random.default_rng(seed).integers(1, 1000, size=7))
    for tasks in (1, 2, 3, 4):
        shards = partition(_layout(sizes), tasks)
        assert [s.index for s in shards] == list(range(tasks))
        assert shards[0].start == 0 and shards[-1].end == sum(sizes)
        assert all(a.end == b.start for a, b in zip(shards, shards[1:]))  # contiguous, in layout order
        assert [p.size for s in shards for p in s.layout.params] == sizes  # every tensor whole, once
        assert all(s.size == s.layout.total for s in shards)
        best = min(max(sum(sizes[a:b]) for a, b in zip((0, *cuts), (*cuts, len(sizes))))
                   for cuts in itertools.combinations(range(1, len(sizes)), tasks - 1))
        assert max(s.size for s in shards) == best


@pytest.mark.unit
def test_chunks_cut_each_tasks_part_into_pieces_of_whole_tensors_in_turn():
    model = models.get("lenet5")
    tasks = partition(model.layout, 2)
    pieces = plan(model.layout, METHODS["baseline"], 2, 3)
    assert [p.index for p in pieces] == [0, 0, 0, 1, 1, 1] and chunked(pieces) and not chunked(tasks)
    for task in tasks:  # a task's pieces are its part, cut as partition() cuts it
        own = [p for p in pieces if p.index == task.index]
        assert [(p.start - task.start, p.end - task.start) for p in own] == \
               [(p.start, p.end) for p in partition(task.layout, 3)]
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert len(plan(model.layout, METHODS["sync"], 1, 4)) == 4
    with pytest.raises(ValueError, match="--chunks 6: PS task 0 holds 5 of lenet5's tensors.*give at most 5"):
        plan(model.layout, METHODS["baseline"], 2, 6)


@pytest.mark.unit
def test_more_tasks_than_tensors_and_methods_that_cannot_shard_are_refused_in_one_line():
    with pytest.raises(ValueError, match="at most 3 addresses in --ps_hosts"):
        partition(_layout([5, 6, 7]), 4)
    model = models.get("lenet5")
    assert set(shardable_methods()) == set(METHODS)  # MP² and the WNN build their pieces together (Whole)

    class Mine(METHODS["baseline"]):  # a method of the user's, not declared per tensor
        name, shardable = "mine", False

    with pytest.raises(ValueError, match=r"--method mine runs on one PS task in one piece .* give one address in "
                                         r"--ps_hosts and no --chunks; the methods that shard are baseline, sync"):
        plan(model.layout, Mine, 2)
    assert len(plan(model.layout, Mine, 1)) == 1  # one task: every method


@pytest.mark.unit
def test_a_run_with_another_number_of_ps_tasks_differs_by_name():
    one = RunConfig("lenet5", 10, "abc", "fashion_mnist", "baseline", 4, 125, 10, 1e-3, 0.0, 0)
    two = RunConfig(**{**json.loads(one.to_json()), "ps_tasks": 2})
    assert one.differences(two) == ["--ps_hosts (number of PS tasks, which sets the model's partition): worker has 2, "
                                    "the PS has 1"]
    assert RunConfig.from_json(json.dumps({k: v for k, v in json.loads(one.to_json()).items() if k != "ps_tasks"})) == one


@pytest.mark.unit
def test_the_digests_of_a_models_slices_add_up_to_the_whole_models():
    import tensorflow as tf

    from runtime.wire import digest

    vector = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    whole = int(digest(tf.constant(vector)))
    assert sum(int(digest(tf.constant(vector[a:b]), a)) for a, b in ((0, 333), (333, 334), (334, 1000))) == whole
    moved = vector.copy()
    moved[[10, 11]] = moved[[11, 10]]
    assert int(digest(tf.constant(moved))) != whole


# --- every method's pieces, in one process ---------------------------------------------------------------
LENET = models.get("lenet5", 10)
NEW = {"topk": {"ratio": 0.01}, "dgc": {"ratio": 0.01}, "powersgd": {"rank": 2}, "sparseloco": {},
       "streaming": {"sync_every": 4, "fragments": 2, "outer_momentum": 0.9},
       "streaming32": {"sync_every": 4, "fragments": 3, "outer_bits": 32, "outer_momentum": 0.9},
       # MP² builds its pieces together (Whole): the prediction over the pieces' averages of the pushed group.
       "mp2": {}, "mp2-hold-outer": {"prediction": "hold", "outer_lr": 0.7, "outer_momentum": 0.9},
       "mp2-sparseloco": {"push_codec": "sparseloco"}, "mp2-subset": {"broadcast": "subset", "correction_ratio": 0.0},
       "wnn": {}}


def _payloads(name: str, method, rng) -> list[list[list[list[np.ndarray]]]]:
    """[round of the PS's graph (exchange, or Streaming's phase)][worker]: a payload as a worker of `method` sends it."""
    import tensorflow as tf

    from compression import DGC as DGCCompressor
    from compression import TopK as TopKCompressor

    shapes = [p.shape for p in LENET.layout.params]
    grads = lambda: [rng.standard_normal(s).astype(np.float32) for s in shapes]  # noqa: E731
    arrays = lambda tensors: [np.asarray(t) for t in tensors]  # noqa: E731
    if name in ("topk", "dgc"):
        make = (lambda: TopKCompressor(shapes, 0.01)) if name == "topk" else (lambda: DGCCompressor(shapes, ratio=0.01))
        return [[arrays(_compressed(make().compress(grads()))) for _ in range(2)]]
    if name == "powersgd":
        plan = method.plan()
        return [[[rng.standard_normal(n).astype(np.float32)] for _ in range(2)] for n in (plan.first_size, plan.q_size)]
    if name == "sparseloco":
        return [[arrays(method.codec.encode([tf.constant(g) for g in grads()])[0]) for _ in range(2)]]
    if name.startswith("mp2"):
        return [[_mp2_payload(method, phase, rng) for _ in range(2)] for phase in sorted(method.phase_names)
                if phase != 2 or method.opts.broadcast == "subset"]
    if name == "wnn":  # averaging, two recordings, a jump
        return [[[rng.standard_normal(LENET.layout.total).astype(np.float32)] for _ in range(2)] for _ in range(4)]
    return [[arrays(method._encode(method._slice(tf.constant(rng.standard_normal(LENET.layout.total).astype(np.float32)),
                                                 phase), phase)) for _ in range(2)] for phase in method.phase_names]


def _mp2_payload(method, phase: int, rng) -> list[np.ndarray]:
    """A worker's MP² payload of a `phase` step: the model (full) or the pushed group (partial; empty with the codec,
    whose three slots follow), then the correction's sparse gradient of the predicted group (values, positions)."""
    import tensorflow as tf

    layout = method.layout
    full = phase == 0
    dense = rng.standard_normal(layout.total if full else 0 if method.codec else layout.pushed).astype(np.float32)
    out = [dense]
    if method.codec:
        shapes = [p.shape for p in layout.group("pushed")]
        encoded = method.codec.encode([tf.constant(rng.standard_normal(s).astype(np.float32)) for s in shapes])[0]
        out += [np.asarray(t)[:0] if full else np.asarray(t) for t in encoded]
    if method.opts.correction_ratio > 0:
        positions = np.sort(rng.choice(layout.predicted, 50, replace=False)).astype(np.int32)
        out += [rng.standard_normal(0 if full else 50).astype(np.float32), positions[:0] if full else positions]
    return out


def _compressed(c) -> list:
    return [c.values, c.indices, c.dense]


def _run_ps(method, pieces, payloads: list, split: bool) -> tuple[list, np.ndarray]:
    """The PS's graph over `pieces` (Method.build_pieces; the whole method on one piece when not `split`), fed the
    workers' payloads split by the method through one queue per piece and worker, in round order, as on the wire:
    every round's (joined) reply and the model after the last. Every payload must have been taken in its round (a
    dequeue that no reply depends on never runs, and would leave the payload to the next exchange)."""
    import tensorflow as tf

    from runtime.methods.base import PSSide
    from runtime.wire import as_list

    graph = tf.Graph()
    with graph.as_default():
        start = np.random.default_rng(1).standard_normal(LENET.layout.total).astype(np.float32)
        sides, queues, fill = [], [], []
        for k, piece in enumerate(pieces):
            part = tf.Variable(start[piece.start:piece.end])
            mine = [[method.split([tf.constant(t) for t in p], pieces, phase, exchange)[k] if split
                     else [tf.constant(t) for t in p] for p in round_] for (phase, exchange), round_ in payloads]
            own = [tf.queue.FIFOQueue(len(payloads), [t.dtype for t in mine[0][i]]) for i in range(len(mine[0]))]
            fill.append([[q.enqueue(round_[i]) for i, q in enumerate(own)] for round_ in mine])
            queues += own
            sides.append(PSSide(piece.layout, part, 2, tf.constant(0, tf.int64), "/cpu:0",
                                lambda own=own: [as_list(q.dequeue()) for q in own]))
        built = method.build_pieces(sides) if split else [(method, method.build_ps(sides[0]))]
        rounds = {}  # (phase, exchange) -> each piece's reply
        for _, phases in built:
            for phase, p in phases.items():
                for exchange, reply in enumerate((p.reply, *p.then)):
                    rounds.setdefault((phase, exchange), []).append(reply)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for r in range(len(payloads)):  # a session run a round: the queues take them in round order
                session.run([piece[r] for piece in fill])
            replies = []
            for key, _ in payloads:  # a round a session run, every piece's at once
                got = session.run(rounds[key])
                replies.append(session.run(method.join([[tf.constant(t) for t in g] for g in got], pieces, *key))
                               if split else got[0])
            assert session.run([q.size() for q in queues]) == [0] * len(queues)  # every payload taken in its round
            return replies, np.concatenate(session.run([side.model for side in sides]))


@pytest.mark.unit
@pytest.mark.parametrize("name", list(NEW))
def test_every_piece_built_over_its_tensors_gives_the_whole_models_update_and_reply_bit_for_bit(name, tmp_path):
    """Each method but the baseline's kin: the workers' payloads split over 2 tasks × 3 pieces (6 pieces: one holds
    only a bias, some no tensor of a Streaming fragment), the PS built over the pieces (a per-tensor method's pieces
    each over its tensors; MP²'s and the WNN's together, the update on the first piece's task), the replies joined: the replies and the model are the one-PS ones bit for bit, and the split payloads carry its bytes
    (Streaming's 4-bit codes pad a piece with an odd count by half a byte: none of LeNet-5's tensors has one)."""
    method_name = name.split("-")[0].rstrip("0123456789") if not name.startswith("mp2") else "mp2"
    method = METHODS[method_name](LENET.layout, METHODS[method_name].Options.from_json(NEW[name]), RunInfo(2, 8, 1, 1e-3, 0))
    if method_name == "wnn":  # a nowcaster of random weights, recording every step
        import wnn
        from wnn import network

        method.path = str(tmp_path / "wnn.npz")
        wnn.save(method.path, {kind: network.init(seed=1) for kind in network.KINDS},
                 {"model": "lenet5", "spacing_steps": 1, "recording_steps": 1, "spacing": 1, "horizon": 5})
    pieces = plan(LENET.layout, method, 2, 3)
    assert len(pieces) == 6 and any(all(len(p.shape) == 1 for p in piece.layout.params) for piece in pieces)
    rounds = _payloads(method_name, method, np.random.default_rng(0))
    if method_name == "streaming":
        keys = [(p, 0) for p in method.phase_names]
    elif method_name in ("mp2", "wnn"):
        keys = [(p, 0) for p in sorted(method.phase_names)][:len(rounds)] if method_name == "mp2" else \
            [(0, 0), (1, 0), (1, 0), (2, 0)]
    else:
        keys = [(0, e) for e in range(len(rounds))]
    payloads = list(zip(keys, rounds))
    one, whole = _run_ps(method, partition(LENET.layout, 1), payloads, split=False)
    many, parts = _run_ps(method, pieces, payloads, split=True)
    assert whole.tobytes() == parts.tobytes()
    assert np.any(whole != np.random.default_rng(1).standard_normal(LENET.layout.total).astype(np.float32))
    for a, b in zip(one, many):
        assert [(x.dtype, x.tobytes()) for x in a] == [(x.dtype, x.tobytes()) for x in b]
    import tensorflow as tf

    for (phase, exchange), round_ in payloads:
        for payload in round_:
            cut = method.split([tf.constant(t) for t in payload], pieces, phase, exchange)
            assert sum(int(tf.size(t)) * t.dtype.size for c in cut for t in c) == sum(t.nbytes for t in payload)


# --- clusters of two PS tasks -----------------------------------------------------------------------
def _model(directory) -> np.ndarray:
    return npzio.read(directory / "checkpoint.npz")[0]["model"]


@pytest.mark.cluster
@pytest.mark.parametrize("method, tasks, pieces, hang, resumed", [
    # Each task's part in two pieces (--chunks 2): a worker sends them in turn and takes the replies while it sends.
    (["--method", "sync"], 2, 2, 12, 10),
    # Exchanges at steps 4, 8, 12, ...: the checkpoint taken after step 12 is committed once step 16's pushes are in.
    (["--method", "localsgd", "--sync-every", "4", "--outer-lr", "0.7", "--outer-momentum", "0.9"], 3, 1, 16, 8),
], ids=["sync-2tasks-chunks", "diloco-3tasks"])
def test_ps_tasks_end_in_the_one_ps_model_bit_for_bit_through_aborted_calls_and_a_resumed_stall(tmp_path, method, tasks,
                                                                                                pieces, hang, resumed):
    """The same run on one PS task and on several (--verify-sync on: every worker checks the sum of the pieces'
    digests after every exchange). The sharded run has aborted pushes and pulls and a push that never returns
    (an exchanging step), which the launcher resumes from the last committed checkpoint: it ends in the one-task
    model bit for bit, with the same curves and pushed bytes; each reply carries one control word per PS task."""
    flags = ["--workers", "2", *SMALL, "--epochs", "2", "--checkpoint-every", "5", "--verify-sync", "--step-timeout", "8",
             *method]
    faults = f"0/4/push-lost,1/4/pull-waiting,1/8/push-landed,0/8/pull-applied,1/{hang}/push-hang"  # the first attempt's
    one = start("mp2_local.py", *flags, "--out", str(tmp_path / "one"))
    two = run("mp2_local.py", *flags, "--ps", str(tasks), "--chunks", str(pieces), "--out", str(tmp_path / "two"),
              env={"MP2_INJECT_ABORT": faults})
    out, _ = one.communicate(timeout=300)
    assert one.returncode == 0 and two.returncode == 0, out[-3000:] + two.stdout[-5000:]
    assert f"recovery 1/5: the run stopped at step {hang}" in two.stdout, two.stdout[-4000:]
    assert f"resuming from its checkpoint of step {resumed}" in two.stdout
    for warning in ("push (injected fault (MP2_INJECT_ABORT): push-lost); it had not reached the PS: sent again",
                    "push (injected fault (MP2_INJECT_ABORT): push-landed); it had reached the PS: not sent again",
                    "(injected fault (MP2_INJECT_ABORT): pull-waiting); ", "pull-applied); it had been applied: read back"):
        assert warning in two.stdout, warning
    assert "the model over the PS tasks: task 0: conv1/w.." in two.stdout and f"task {tasks - 1}: " in two.stdout
    assert all(f"[ps{k}] ps task {k}: the run finished" in two.stdout for k in range(1, tasks))
    assert _model(tmp_path / "one").tobytes() == _model(tmp_path / "two").tobytes()
    runs = [read_jsonl(tmp_path / name / "metrics.jsonl") for name in ("one", "two")]
    assert [(r["test_acc"], r["loss"], r["bytes_pushed"]) for r in runs[0]] == \
           [(r["test_acc"], r["loss"], r["bytes_pushed"]) for r in runs[1]]
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two")]
    exchanges = summaries[0]["phases"].get("sync", summaries[0]["phases"].get("step"))
    extra = exchanges * 2 * (tasks * pieces - 1) * CONTROL_BYTES  # a control word from every piece, not one
    assert summaries[1]["bytes_pulled_total"] - summaries[0]["bytes_pulled_total"] == extra
    assert all(r["steps_verified_in_sync"] > 0 for r in read_jsonl(tmp_path / "two" / "worker-0.jsonl"))
    assert summaries[1]["resumed_from_step"] == resumed


# A method on one PS and on 2 PS tasks (--chunks C): (flags, C, exchanges a step), one of each way of building the
# pieces. Every method's split, join and pieces are checked against the whole in-process above, through queues that
# take payloads as the wire's do (a piece's payload left on its queue fails there); DGC, Streaming and SparseLoCo
# ran such a pair too when they learnt to shard, ending in the one-PS model bit for bit.
PAIRS = {
    # Per tensor, two exchanges a step, each split over the pieces; P̂ and the 1-D means put back in the whole
    # vector's order.
    "powersgd": (["--method", "powersgd"], 2, 2),
    # Built whole (Whole): each piece averages its part of the pushed group, the first task predicts the rest from
    # them (an untrained predictor, the correction on) and writes every piece its slice.
    "mp2": (["--method", "mp2", "--predictor", "{root}/predictor.npz"], 2, 1),
}


@pytest.fixture(scope="module")
def pair_runs(tmp_path_factory) -> dict:
    """The runs of PAIRS, at once (most of a small run is start-up; eight at once, some 36 processes, kept a PS task
    waiting past a minute for task 0 on a loaded machine), built once in the session."""
    def build(root: Path) -> dict:
        from predictor import Predictor, save_checkpoint

        save_checkpoint(str(root / "predictor.npz"), LENET.layout, Predictor(LENET.layout, seed=0).numpy_weights())
        commands = {}
        for name, (method, chunks, _) in PAIRS.items():
            flags = ["--workers", "2", *SMALL, "--connect-timeout", "300", "--epochs", "1", "--verify-sync",
                     *[f.format(root=root) for f in method]]
            commands[f"{name}-one"] = ("mp2_local.py", *flags, "--out", str(root / f"{name}-one"))
            commands[f"{name}-two"] = ("mp2_local.py", *flags, "--ps", "2", "--chunks", str(chunks),
                                       "--out", str(root / f"{name}-two"))
        names = list(commands)
        for batch in (names[k:k + 4] for k in range(0, len(names), 4)):
            done = run_together(*[commands[name] for name in batch], timeout=900)
            for name, d in zip(batch, done):
                assert d.returncode == 0, f"{name}: {d.stdout[-4000:]}"
        return {name: str(root / name) for name in commands}

    return {name: Path(path) for name, path in built_once(tmp_path_factory, "shards-pairs", build).items()}


@pytest.mark.cluster
@pytest.mark.parametrize("name", list(PAIRS))
def test_methods_on_two_ps_tasks_end_in_the_one_ps_model_bit_for_bit(pair_runs, name):
    """A method built over pieces of the model (Method.build_pieces, split, join) on 2 PS tasks (and --chunks) ends in
    the one-PS run's model bit for bit, with its curves and pushed bytes; every exchange's reply carries one control word
    a piece (--verify-sync: every worker checks the sum of the pieces' digests at every exchange)."""
    _, chunks, exchanges = PAIRS[name]
    one, two = pair_runs[f"{name}-one"], pair_runs[f"{name}-two"]
    assert _model(one).tobytes() == _model(two).tobytes()
    runs = [read_jsonl(d / "metrics.jsonl") for d in (one, two)]
    assert [(r["test_acc"], r["loss"], r["bytes_pushed"]) for r in runs[0]] == \
           [(r["test_acc"], r["loss"], r["bytes_pushed"]) for r in runs[1]]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (one, two)]
    steps = sum(n for phase, n in summaries[0]["phases"].items() if phase != "local")
    assert summaries[1]["bytes_pulled_total"] - summaries[0]["bytes_pulled_total"] == \
        steps * exchanges * 2 * (2 * chunks - 1) * CONTROL_BYTES
    assert [r["steps_verified_in_sync"] for r in read_jsonl(two / "worker-0.jsonl")] == [steps]


@pytest.mark.cluster
def test_a_ps_task_or_a_worker_with_another_partition_is_refused_by_name(tmp_path):
    """A PS task 1 with another --lr is refused by task 0 (both say why); then, with a right PS task 1, a worker
    that names one PS task (another partition) is refused by the PS with the flag that differs."""
    hosts = cluster_flags(1)
    ps_hosts = hosts[1]
    ports = cluster_flags(0)[1]  # one more port, for PS task 1
    both = ["--ps_hosts", f"{ps_hosts},{ports}", hosts[2], hosts[3]]
    common = [*SMALL, "--epochs", "1", "--connect-timeout", "8"]
    ps0, ps1 = run_together(("mp2_ps.py", *both, *common, "--out", str(tmp_path / "a")),
                            ("mp2_ps.py", *both, "--task_index", "1", *common, "--lr", "0.01", "--out", str(tmp_path / "a")))
    assert ps0.returncode == 1 and ps1.returncode == 1, ps0.stdout[-2000:] + ps1.stdout[-2000:]
    assert "refused PS task 1: --lr: PS task 1 has 0.01, PS task 0 has 0.001" in ps0.stdout, ps0.stdout[-2000:]
    assert "PS task 0 refused this task: --lr: PS task 1 has 0.01" in ps1.stdout, ps1.stdout[-2000:]
    ps0, ps1, worker = run_together(("mp2_ps.py", *both, *common, "--out", str(tmp_path / "b")),
                                    ("mp2_ps.py", *both, "--task_index", "1", *common, "--out", str(tmp_path / "b")),
                                    ("mp2_worker.py", "--ps_hosts", ps_hosts, hosts[2], hosts[3], "--task_index", "0",
                                     *common, "--out", str(tmp_path / "b")))
    assert "PS task 1 at" in ps0.stdout and "checked in" in ps0.stdout, ps0.stdout[-2000:]
    assert ("the PS refused this worker: --ps_hosts (number of PS tasks, which sets the model's partition): worker "
            "has 1, the PS has 2") in worker.stdout, worker.stdout[-2000:]
    assert worker.returncode == 1 and ps0.returncode == 1 and "Traceback" not in ps0.stdout + worker.stdout
    assert "ps task 1: error: PS task 0 stopped the run: worker 0 was refused" in ps1.stdout, ps1.stdout[-2000:]


@pytest.mark.cluster
def test_a_ps_task_killed_mid_run_stops_every_process_naming_it_and_leaves_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    launcher = start("mp2_local.py", "--ps", "2", "--workers", "2", *SMALL, "--epochs", "40", "--out", str(out))
    end = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
        assert time.monotonic() < end and launcher.poll() is None
        time.sleep(0.5)
    os.kill(_pid_of(out, "1"), signal.SIGKILL)
    text, _ = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    named = "PS task 1 at 127.0.0.1:"
    assert f"ps: error: {named}" in text and "stopped answering" in text, text[-4000:]
    assert "the checkpoint of step" in text and "is intact" in text
    saved, meta = npzio.read(out / "checkpoint.npz")
    assert meta["steps_done"] >= 20 and saved["model"].size == models.get("lenet5").layout.total
    lasts = [(out / f"{w}.log").read_text().strip().splitlines()[-1] for w in ("w0", "w1")]
    # A worker names it (from its own lost call or the PS's notice) unless the launcher stopped it first.
    assert any("PS task 1" in line for line in lasts), lasts


def _pid_of(out, task: str) -> int:
    """The pid of the PS task `task` started for the run in `out`."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().decode().split("\0")
            except OSError:
                continue
            if any(a.endswith("mp2_ps.py") for a in argv) and str(out) in argv and "--task_index" in argv \
                    and argv[argv.index("--task_index") + 1] == task:
                return int(entry)
    raise AssertionError(f"no PS task {task} for {out}")
