"""The scale benchmark on emulated hosts (benchmarks/scale_hosts.py): the link bound from the exact bytes,
the exchanges a window holds, and the emulated hosts' PS tasks (namespaces, addresses, processes). No
namespace is made here."""
import sys

import pytest

from benchmarks import emulated_hosts, network_run, scale_hosts
from benchmarks.scale_hosts import LinkLoad, exchanges_between, link_bounds, link_loads

pytestmark = pytest.mark.unit

MBIT = 10**6


# --- the bound ------------------------------------------------------------------------------------

def test_one_ps_task_carries_every_workers_model_each_way():
    loads = link_loads([1000], workers=4)
    # In: four models of 1000 floats; out: four replies, each the model and a 16-byte control word.
    assert loads == [LinkLoad("ps0", 4 * 4000, 4 * (4000 + 16)), LinkLoad("worker", 4000 + 16, 4000)]
    bounds = link_bounds(loads, 100 * MBIT)
    assert bounds["push_then_reply_s"] == pytest.approx(8 * (16000 + 16064) / 1e8)
    assert bounds["both_directions_s"] == pytest.approx(8 * 16064 / 1e8)
    assert bounds["push_then_reply_link"] == bounds["both_directions_link"] == "ps0"


def test_each_ps_task_gets_its_slice_and_every_worker_a_control_word_per_task():
    loads = {l.link: l for l in link_loads([300, 500, 200], workers=3)}
    assert loads["ps1"] == LinkLoad("ps1", 3 * 2000, 3 * (2000 + 16))
    assert loads["ps2"] == LinkLoad("ps2", 3 * 800, 3 * (800 + 16))
    assert loads["worker"] == LinkLoad("worker", 4000 + 3 * 16, 4000)
    assert link_bounds(list(loads.values()), 8)["push_then_reply_link"] == "ps1"  # the largest shard's task


def test_with_chunks_every_piece_carries_its_control_word():
    loads = {l.link: l for l in link_loads([300, 500], workers=2, chunks=4)}
    assert loads["ps0"] == LinkLoad("ps0", 2 * 1200, 2 * (1200 + 4 * 16))
    assert loads["worker"] == LinkLoad("worker", 3200 + 2 * 4 * 16, 3200)


def test_with_more_ps_tasks_than_workers_the_workers_link_is_the_bound():
    loads = link_loads([250, 250, 250, 250], workers=2)
    bounds = link_bounds(loads, 8)  # 8 bit/s: seconds equal bytes
    assert bounds["push_then_reply_link"] == "worker"
    assert bounds["push_then_reply_s"] == (4000 + 64) + 4000
    assert bounds["both_directions_s"] == 4000 + 64


def test_resnet18_at_100mbit_push_then_reply_is_twice_both_directions_and_halves_with_two_tasks():
    total = 3_139_274  # python -m models resnet18
    one = link_bounds(link_loads([total], 4), 100 * MBIT)
    assert one["push_then_reply_s"] == pytest.approx(8 * (32 * total + 4 * 16) / 1e8)  # about 8.04 s
    assert one["push_then_reply_s"] == pytest.approx(2 * one["both_directions_s"], rel=1e-5)
    two = link_bounds(link_loads(scale_hosts.shard_sizes("resnet18", 2), 4), 100 * MBIT)
    assert one["push_then_reply_s"] / 2 < two["push_then_reply_s"] < 0.55 * one["push_then_reply_s"]


def test_shard_sizes_are_the_runtimes_partition():
    sizes = scale_hosts.shard_sizes("lenet5", 2)
    assert len(sizes) == 2 and sum(sizes) == scale_hosts.shard_sizes("lenet5", 1)[0]


def test_exchanges_in_a_window_follow_the_methods_schedule():
    assert exchanges_between(3, 9, steps_per_epoch=12, every=1) == 6  # the baseline: every step
    assert exchanges_between(8, 24, steps_per_epoch=32, every=16) == 1  # local SGD H=16: step 16 only
    assert exchanges_between(0, 32, steps_per_epoch=32, every=16) == 2
    assert exchanges_between(0, 20, steps_per_epoch=10, every=16) == 3  # steps 10, 16 and 20 (epoch ends)


def test_a_windows_bound_is_its_exchanges_share_of_the_steps():
    row = {"workers": 2, "ps_tasks": 1, "method": "localsgd", "window_steps": 16, "window_exchanges": 1,
           "s_per_step": 1.0, "measured_ps0_in_per_exchange": None, "measured_ps0_out_per_exchange": None}
    out = scale_hosts.derive(row, None, "lenet5", "100mbit")
    per_exchange = link_bounds(link_loads(scale_hosts.shard_sizes("lenet5", 1), 2), 100 * MBIT)
    assert out["bound_push_then_reply_s_per_step"] == pytest.approx(per_exchange["push_then_reply_s"] / 16)
    assert out["vs_push_then_reply"] == pytest.approx(1.0 / out["bound_push_then_reply_s_per_step"])
    assert out["compute_s_per_step"] is None


# --- the emulated hosts' PS tasks ------------------------------------------------------------------

def _addresses(topology):
    commands = [c for _, commands in topology.setup_steps() for c in commands]
    return [c[c.index("add") + 1] for c in commands if c[3:5] == ["addr", "add"]]


def test_one_ps_task_keeps_the_hosts_and_addresses_of_before():
    topology = emulated_hosts.Topology("mp2nT", 2, "100mbit")
    assert topology.hosts == ["mp2nTps", "mp2nTw0", "mp2nTw1"] == [*topology.ps_hosts, *topology.worker_hosts]
    assert [topology.address(i) for i in range(3)] == ["10.213.0.1", "10.213.0.10", "10.213.0.11"]
    assert _addresses(topology) == ["10.213.0.1/24", "10.213.0.10/24", "10.213.0.11/24"]


def test_each_ps_task_has_its_own_namespace_address_and_shaped_cable():
    topology = emulated_hosts.Topology("mp2nT", 2, "100mbit", ps_tasks=3)
    assert topology.ps_hosts == ["mp2nTps", "mp2nTps1", "mp2nTps2"]
    assert topology.hosts == ["mp2nTps", "mp2nTps1", "mp2nTps2", "mp2nTw0", "mp2nTw1"]
    assert topology.namespaces == ["mp2nTsw", *topology.hosts]
    assert [topology.ps_address(k) for k in range(3)] == ["10.213.0.1", "10.213.0.2", "10.213.0.3"]
    assert [topology.worker_address(i) for i in range(2)] == ["10.213.0.10", "10.213.0.11"]
    assert [topology.address(i) for i in range(5)] == ["10.213.0.1", "10.213.0.2", "10.213.0.3", "10.213.0.10",
                                                      "10.213.0.11"]
    assert _addresses(topology) == [f"{topology.address(i)}/24" for i in range(5)]
    commands = [c for _, commands in topology.setup_steps() for c in commands]
    tbf = [(c[3], c[8]) for c in commands if "tbf" in c]
    assert tbf == [x for i, host in enumerate(topology.hosts) for x in ((host, "eth0"), ("mp2nTsw", f"p{i}"))]
    with pytest.raises(IndexError):
        topology.address(5)


def test_ps_tasks_and_workers_beyond_the_addresses_are_refused():
    with pytest.raises(ValueError, match="PS tasks"):
        emulated_hosts.Topology("mp2nT", 2, "100mbit", ps_tasks=0)
    with pytest.raises(ValueError, match="PS tasks"):
        emulated_hosts.Topology("mp2nT", 2, "100mbit", ps_tasks=emulated_hosts.MAX_PS_TASKS + 1)
    with pytest.raises(ValueError, match="workers"):
        emulated_hosts.Topology("mp2nT", emulated_hosts.MAX_WORKERS + 1, "100mbit")
    last = emulated_hosts.Topology("mp2nT", emulated_hosts.MAX_WORKERS, "1gbit", ps_tasks=emulated_hosts.MAX_PS_TASKS)
    assert last.ps_address(emulated_hosts.MAX_PS_TASKS - 1) == "10.213.0.9"
    assert last.worker_address(emulated_hosts.MAX_WORKERS - 1) == "10.213.0.254"


def test_each_ps_task_runs_in_its_own_namespace_with_its_task_index(tmp_path):
    spec = network_run.RunSpec("baseline", "100mbit", 2, ["--method", "baseline"], tmp_path)
    ps = ["10.213.0.1:2222", "10.213.0.2:2222"]
    children = network_run.run_children(spec, ps, ["10.213.0.10:2222", "10.213.0.11:2222"],
                                        ["nsps", "nsps1", "nsw0", "nsw1"])
    assert [c.name for c in children] == ["ps", "ps1", "w0", "w1"]
    assert [c.command[:5] for c in children] == [["ip", "netns", "exec", ns, sys.executable]
                                                 for ns in ("nsps", "nsps1", "nsw0", "nsw1")]
    for child, index in zip(children, (0, 1, 0, 1)):
        assert child.argv[child.argv.index("--task_index") + 1] == str(index)
        assert child.argv[child.argv.index("--ps_hosts") + 1] == ",".join(ps)
    assert children[1].argv[0].endswith("mp2_ps.py") and children[2].argv[0].endswith("mp2_worker.py")
    one = network_run.run_children(spec, ["10.213.0.1:2222"], ["10.213.0.10:2222", "10.213.0.11:2222"], None)
    assert [c.name for c in one] == ["ps", "w0", "w1"] and "--task_index" not in one[0].argv


# --- the window -------------------------------------------------------------------------------------

def test_the_window_is_worker_0s_first_and_last_progress_line_of_the_first_epoch():
    line = "worker 0 epoch 1/1 8/32 loss=2.292 acc=0.1562 (3.2s)"
    match = scale_hosts.PROGRESS_LINE.match(line)
    assert match and (match[1], match[3], match[4]) == ("1", "8", "32")
    assert not scale_hosts.PROGRESS_LINE.match("worker 10 epoch 1/1 8/32 (3.2s)")
    assert not scale_hosts.PROGRESS_LINE.match("worker 0: epoch 1/1 loss 2.8161 train_acc 0.1328 comm 2.6s")
    marks = [{"epoch": 1, "step": s, "t": float(s)} for s in (8, 16, 24)] + [{"epoch": 2, "step": 8, "t": 99.0}]
    first, last = scale_hosts.window(marks)
    assert (first["step"], last["step"]) == (8, 24)
    with pytest.raises(scale_hosts.RunError, match="progress line"):
        scale_hosts.window(marks[:1])
