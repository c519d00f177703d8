"""The launcher's supervisor (runtime/launcher.py's LocalCluster) on plain Python children: a command
prefix, the environment and directory they get, what the terminal shows, a time limit, and that no
child outlives a failure, a failed start or an exception."""
from __future__ import annotations

import signal
import sys

import pytest

from runtime.launcher import INTERRUPTED, Child, LocalCluster, prefixed

pytestmark = pytest.mark.unit

SLEEP = ["-c", "import time; time.sleep(60)"]


def test_a_child_runs_under_its_prefix_with_the_env_and_cwd_given(tmp_path, capsys):
    probe = "import os; print('probe', os.environ['MP2_PROBE'], os.environ['TF_CPP_MIN_LOG_LEVEL'], os.getcwd())"
    # `env NAME=VALUE` stands in for `ip netns exec NS`: a prefix that runs the interpreter after it.
    child = Child("ps", ["-c", probe], prefix=["env", "MP2_PROBE=from-prefix"])
    assert child.command == ["env", "MP2_PROBE=from-prefix", sys.executable, "-c", probe]
    cluster = LocalCluster([child], log_dir=tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=tmp_path)
    cluster.start()
    assert cluster.wait() == 0 and cluster.failure is None
    log = (tmp_path / "ps.log").read_text()
    assert f"ps started as: env MP2_PROBE=from-prefix -c {probe}" in log.splitlines()[0]
    assert f"probe from-prefix 3 {tmp_path}\n" in log
    assert f"[ps] probe from-prefix 3 {tmp_path}\n" in capsys.readouterr().out


def test_the_default_terminal_drops_tensorflows_noise_only():
    assert prefixed("w0", "epoch 1\n") == "[w0] epoch 1\n"
    assert prefixed("w0", "I0000 00:00:1.5   31936 port.cc:153] oneDNN custom operations are on.\n") is None


def test_a_terminal_filter_decides_what_is_shown_and_the_first_failure_is_named(tmp_path, capsys):
    children = [Child("ps", SLEEP), Child("w0", ["-c", "import sys; print('kept'); print('shown'); sys.exit(3)"])]
    cluster = LocalCluster(children, log_dir=tmp_path, ps_grace=0,
                           echo=lambda name, line: f"<{name}> {line}" if "shown" in line else None)
    cluster.start()
    assert cluster.wait() == 3 and cluster.failure == "w0 exited with 3"
    assert all(c.proc.poll() is not None for c in children)  # the sleeping PS was stopped
    out = capsys.readouterr().out
    assert "<w0> shown\n" in out and "kept" not in out and "waiting up to" not in out  # no grace, no wait
    assert "kept\nshown\n" in (tmp_path / "w0.log").read_text()


def test_a_run_over_its_time_limit_is_stopped(tmp_path):
    children = [Child("ps", SLEEP), Child("w0", SLEEP)]
    cluster = LocalCluster(children, log_dir=tmp_path, echo=False)
    cluster.start()
    code = cluster.wait(timeout=1)
    assert code == 1 and cluster.failure == "the run took over 1 s" and code != INTERRUPTED
    assert all(c.proc.poll() is not None for c in children)


def test_stop_after_a_failed_start_stops_the_children_that_started(tmp_path):
    children = [Child("ps", SLEEP), Child("w0", SLEEP, prefix=[str(tmp_path / "no-such-command")])]
    cluster = LocalCluster(children, echo=False)
    with pytest.raises(FileNotFoundError):
        cluster.start()
    assert children[0].proc.poll() is None and children[1].proc is None
    cluster.stop(grace=0)
    assert children[0].proc.poll() is not None


def test_an_exception_in_wait_stops_every_child(tmp_path):
    class Raised(Exception):
        pass

    def raise_it(_signum, _frame):
        raise Raised()

    children = [Child("ps", SLEEP), Child("w0", SLEEP)]
    cluster = LocalCluster(children, echo=False)
    cluster.start()
    previous = signal.signal(signal.SIGALRM, raise_it)  # as the network benchmark's SIGTERM handler raises
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Raised):
            cluster.wait()
        stopped_by_wait = [c.proc.poll() is not None for c in children]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        cluster.stop(grace=0)
    assert stopped_by_wait == [True, True]
