"""Cluster flags and TF_CONFIG, the run configuration check, and the launcher's flag split."""
from __future__ import annotations

import argparse
import json

import pytest

import socket

from runtime.cluster import PORT_RANGE_ENV, ClusterError, add_cluster_flags, free_ports, resolve
from runtime.config import RunConfig
from runtime import cmdline

pytestmark = pytest.mark.unit


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_cluster_flags(p)
    return p.parse_args(argv)


def test_flags_give_the_cluster_and_index():
    cluster, index = resolve(_args("--ps_hosts", "10.0.0.1:2222", "--worker_hosts", "10.0.0.2:2222,10.0.0.3:2222",
                                   "--task_index", "1"), "worker")
    assert cluster.ps == ("10.0.0.1:2222",) and cluster.workers == ("10.0.0.2:2222", "10.0.0.3:2222")
    assert index == 1


def test_tf_config_is_used_when_flags_are_absent(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"ps": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]},
        "task": {"type": "worker", "index": 1},
    }))
    cluster, index = resolve(_args(), "worker")
    assert cluster.workers == ("10.0.0.2:2222", "10.0.0.3:2222") and index == 1


@pytest.mark.parametrize("argv, message", [
    ((), "no cluster given"),
    (("--ps_hosts", "localhost:1", "--worker_hosts", "127.0.0.1:2", "--task_index", "0"), "127.0.0.1 instead of localhost"),
    (("--ps_hosts", "127.0.0.1", "--worker_hosts", "127.0.0.1:2", "--task_index", "0"), "is not host:port"),
    (("--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2"), "needs --task_index"),
    (("--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--task_index", "3"), "outside 0..0"),
    (("--ps_hosts", "127.0.0.1:1,127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--task_index", "0"), "appears twice"),
    (("--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2,127.0.0.1:2", "--task_index", "0"), "appears twice"),
])
def test_bad_clusters_are_explained(monkeypatch, argv, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ClusterError, match=message):
        resolve(_args(*argv), "worker")


def test_several_ps_tasks_each_with_its_index(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    hosts = ("--ps_hosts", "127.0.0.1:1,127.0.0.1:3", "--worker_hosts", "127.0.0.1:2")
    cluster, index = resolve(_args(*hosts), "ps")
    assert cluster.ps == ("127.0.0.1:1", "127.0.0.1:3") and index == 0  # task 0 unless told
    assert resolve(_args(*hosts, "--task_index", "1"), "ps")[1] == 1
    with pytest.raises(ClusterError, match=r"outside 0\.\.1 for the 2 ps host"):
        resolve(_args(*hosts, "--task_index", "2"), "ps")


def test_tf_config_names_every_ps_task_and_this_ones_index(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"ps": ["10.0.0.1:2222", "10.0.0.4:2222"], "worker": ["10.0.0.2:2222"]},
        "task": {"type": "ps", "index": 1},
    }))
    cluster, index = resolve(_args(), "ps")
    assert cluster.ps == ("10.0.0.1:2222", "10.0.0.4:2222") and index == 1


def test_config_differences_name_the_flags():
    ps = RunConfig("lenet5", 10, "abc", "fashion_mnist", "mp2", 4, 125, 10, 1e-3, 1.0, 0)
    worker = RunConfig("alexnet", 10, "def", "fashion_mnist", "mp2", 4, 125, 10, 1e-2, 1.0, 0)
    diffs = ps.differences(worker)
    assert any(d.startswith("--model: worker has 'alexnet', the PS has 'lenet5'") for d in diffs)
    assert any(d.startswith("--lr:") for d in diffs)
    assert len(diffs) == 3  # model, fingerprint, lr
    assert ps.differences(RunConfig.from_json(ps.to_json())) == []


def split_ps_only(argv):
    ps, workers = cmdline.split(argv)
    assert ps == argv  # the PS gets every flag
    return workers


def test_workers_get_every_flag_but_the_ps_only_ones():
    argv = ["--online-wait", "--model", "lenet5", "--resume", "--snapshot-every=3", "--warmup-snapshots", "5",
            "--snapshot-dir", "d", "--epochs", "2", "--lr", "0.01"]
    assert split_ps_only(argv) == ["--model", "lenet5", "--epochs", "2", "--lr", "0.01"]
    # A file the PS reads that workers may read too (subset broadcast) stays.
    assert split_ps_only(["--predictor", "p.npz", "--resume"]) == ["--predictor", "p.npz"]
    # A value that starts with -- is known to be a value: the parser's table says the flag takes one.
    assert split_ps_only(["--online-stage-flags", "--epochs 1", "--no-online-wait", "--mixup", "0"]) == ["--mixup", "0"]


def test_one_splitter_serves_the_pipeline_and_the_grids():
    takes_value, _ = cmdline.training_flags()
    argv = ["--seed", "3", "--fit-input", "--lr", "0.01", "--data-dir=/d", "--push", "front"]
    # What mp2_pipeline.py passes on to the stage.
    assert cmdline.keep(argv, ("--seed", "--fit-input", "--data-dir", "--push"), takes_value) == \
        ["--seed", "3", "--fit-input", "--data-dir=/d", "--push", "front"]
    # A grid setting's flags replace the common ones of the same name (no table: the next word unless a flag).
    assert cmdline.merge(["--lr", "0.003", "--fit-input", "--epochs=10"], ["--epochs", "1", "--lr", "0.05"]) == \
        ["--fit-input", "--epochs", "1", "--lr", "0.05"]
    assert cmdline.names(["--a", "1", "--b", "--c=2"]) == ["--a", "--b", "--c"]
    assert cmdline.groups(["--a", "1", "--b", "--c=2"]) == [["--a", "1"], ["--b"], ["--c=2"]]
    assert cmdline.groups(["--fit-input", "x"], takes_value) == [["--fit-input"], ["x"]]  # a switch takes no value
    assert cmdline.given(argv, "--data-dir") and not cmdline.given(argv, "--data")


def test_free_ports_come_from_mp2_port_range_and_skip_a_port_in_use(monkeypatch):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    taken = busy.getsockname()[1]
    try:
        monkeypatch.setenv(PORT_RANGE_ENV, f"{taken}-{taken + 3}")
        for _ in range(5):  # whatever the random start, the busy port is never handed out
            ports = free_ports(3)
            assert len(set(ports)) == 3 and set(ports) <= set(range(taken + 1, taken + 4)), ports
        with pytest.raises(ValueError, match="only 3 of the 4 ports"):
            free_ports(4)
    finally:
        busy.close()


@pytest.mark.parametrize("text", ["20000", "b-c", "30000-20000", "80-90"])
def test_a_malformed_mp2_port_range_is_named(monkeypatch, text):
    monkeypatch.setenv(PORT_RANGE_ENV, text)
    with pytest.raises(ValueError, match=f"{PORT_RANGE_ENV}='{text}': expected LO-HI"):
        free_ports(1)


def test_no_entry_point_takes_an_abbreviated_flag(capsys):
    """`--ps 1` was taken for `--ps_hosts 1` by argparse's prefix matching: every flag must be spelled out."""
    from runtime.flags import ps_parser

    for argv in (["--ps", "1"], ["--ps_h", "127.0.0.1:1"], ["--epoch", "3"], ["--checkpoint", "5"]):
        with pytest.raises(SystemExit):
            ps_parser("").parse_args(argv)
        assert "unrecognized arguments" in capsys.readouterr().err
    assert ps_parser("").parse_args(["--epochs", "3"]).epochs == 3
