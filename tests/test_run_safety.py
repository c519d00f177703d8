"""A run never loses a record, never hides an error's text, and stops a user's mistake in one line.

Each case here was found by a new user's battery; each test fails on the code before its fix.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from helpers import npzio
from runtime import tferrors
from runtime.ps import _not_admitted, loss_diverged
from tests.cluster import launcher_env, ROOT, SMALL, take_ports, interruptible, run, run_in_one

QUICK = [*SMALL, "--epochs", "1"]


# --- TensorFlow's errors, whole ------------------------------------------------------------------
def _session_error(build) -> tf.errors.OpError:
    graph = tf.Graph()
    with graph.as_default():
        fetch, feed = build()
        with tf.compat.v1.Session(graph=graph) as session:
            try:
                session.run(fetch, feed, options=tf.compat.v1.RunOptions(timeout_in_ms=200))
            except tf.errors.OpError as e:
                return e
    raise AssertionError("the session run did not fail")


@pytest.mark.unit
def test_an_error_is_explained_by_its_own_text_and_node_not_the_generic_first_line():
    def closed_queue():
        q = tf.queue.FIFOQueue(1, [tf.float32], shared_name="closed", name="inbox")
        return tf.group(q.close(), q.dequeue()), None

    def nan():
        x = tf.compat.v1.placeholder(tf.float32, [])
        return tf.debugging.check_numerics(x, "values from worker 3", name="finite"), {x: float("nan")}

    error = _session_error(nan)
    assert error.message.splitlines()[0] == "Graph execution error:"  # all that was shown before
    text = tferrors.explain(error)
    assert "values from worker 3 : Tensor had NaN values (node finite)" in text, text
    assert "Graph execution error" not in text and "\n" not in text and "File " not in text
    closed = tferrors.explain(_session_error(closed_queue))
    assert "is closed and has insufficient elements" in closed, closed


@pytest.mark.unit
def test_a_cause_is_named_only_when_the_error_text_shows_it():
    def aborted(text):
        return tf.errors.AbortedError(None, None, f"Graph execution error:\n\n{text}")

    assert tferrors.known_cause(aborted("Session handle is not found: 1f2e. Possibly this worker just restarted."))
    assert "twice" in tferrors.known_cause(aborted("The same RunGraph (Worker) request was received twice."))
    assert tferrors.known_cause(aborted("Some new reason nobody has seen")) == ""


@pytest.mark.unit
def test_a_call_that_may_have_taken_effect_is_asked_about_and_a_named_failure_is_not():
    def aborted(text):
        return tf.errors.AbortedError(None, None, f"Graph execution error:\n\n{text}")

    assert tferrors.ambiguous(aborted("Some new reason nobody has seen"))
    assert tferrors.ambiguous(aborted("The same RunGraph (Worker) request was received twice. graph_handle: 5"))
    assert not tferrors.ambiguous(aborted("Session handle is not found: 1f2e. Possibly this worker just restarted."))
    assert not tferrors.ambiguous(tf.errors.UnavailableError(None, None, "Socket closed"))


@pytest.mark.unit
def test_a_lost_connection_says_the_cause_its_words_show():
    """A second process claiming task 0 reached the first as Unavailable ("Socket closed") carrying the
    PS's "session handle is not found": the worker still names the claim."""
    from types import SimpleNamespace

    from runtime.worker import WorkerGraph

    claimed = tf.errors.UnavailableError(None, None, "Graph execution error:\n\nUNAVAILABLE: Socket closed\n"
                                         "ABORTED: Session handle is not found: e377. Possibly this worker just restarted.")
    worker = SimpleNamespace(index=0, joined=True)
    stopped = WorkerGraph._stopped(worker, None, claimed, "waiting for the PS's reply", 15)
    assert "lost the connection to the PS" in str(stopped) and "--task_index 0" in str(stopped), stopped
    assert not stopped.resumable  # another process holds the task: a resume would meet it again
    plain = WorkerGraph._stopped(worker, None, tf.errors.UnavailableError(None, None, "Socket closed"), "waiting", 15)
    assert "—" not in str(plain) and plain.resumable
    assert not WorkerGraph._stopped(SimpleNamespace(index=0, joined=False), None,
                                    tf.errors.UnavailableError(None, None, "Socket closed"), "waiting", 15).resumable


# --- the PS's words -------------------------------------------------------------------------------
@pytest.mark.unit
def test_refused_workers_are_named_as_refused_not_as_never_connected():
    text = _not_admitted([0, 1], {0: "--model: worker has 'alexnet', the PS has 'lenet5'"}, 60)
    assert "worker 0 was refused (--model: worker has 'alexnet'" in text
    assert "worker(s) 1 did not connect" in text and "0, 1" not in text


@pytest.mark.unit
def test_a_finite_but_exploding_loss_counts_as_divergence():
    reports = [{"worker": 0, "loss": 0.7}, {"worker": 1, "loss": 1.5e25}]
    assert "worker 1's mean loss is 1.5e+25" in loss_diverged(reports, 3)
    assert loss_diverged([{"worker": 0, "loss": 2.4}], 1) == ""
    assert loss_diverged([{"worker": 0, "loss": float("nan")}], 1)


@pytest.mark.cluster
def test_a_run_whose_loss_explodes_stops_with_a_reason_and_no_false_promise(tmp_path):
    done = run("mp2_local.py", "--workers", "2", "--method", "topk", "--lr", "1e6", "--out", str(tmp_path / "run"),
               *QUICK, timeout=300)
    assert done.returncode != 0, done.stdout[-3000:]
    assert "diverged" in done.stdout and "lower --lr" in done.stdout, done.stdout[-3000:]
    assert "intact" not in done.stdout  # no checkpoint exists yet, so none is promised
    assert "Traceback" not in done.stdout


@pytest.mark.cluster
def test_the_launcher_reads_a_finished_runs_epochs_against_the_presets(tmp_path):
    """mp2_local.py --resume says "nothing to do" before TensorFlow starts when the run has its epochs: 30 under the
    measured preset, 5 under the paper's. A run of 5 epochs is not finished under the measured preset: the launcher
    goes on (here to its pre-check, which refuses the model)."""
    def finished_at(epochs: int):
        out = tmp_path / f"done{epochs}"
        out.mkdir()
        npzio.write(out / "checkpoint.npz", {"model": np.zeros(1, np.float32)}, {"epoch": epochs})
        return out

    measured, paper, short = run_in_one(
        "mp2_local.py", ["--workers", "1", "--resume", "--out", str(finished_at(30))],
        ["--workers", "1", "--resume", "--preset", "paper", "--out", str(finished_at(5))],
        ["--workers", "1", "--resume", "--model", "nosuch", "--out", str(tmp_path / "done5")])
    for done, epochs in ((measured, 30), (paper, 5)):
        assert done.returncode == 0 and f"finished its {epochs} epochs; nothing to do" in done.stdout, done.stdout
    assert short.returncode != 0 and "nothing to do" not in short.stdout and "nosuch" in short.stdout, short.stdout


# --- records are never lost ------------------------------------------------------------------------
@pytest.mark.cluster
def test_a_finished_run_resumes_to_nothing_at_once_a_fresh_run_never_replaces_it_and_fresh_keeps_it_aside(tmp_path):
    """Started from another directory with a relative --out: the run lands there (nothing in the
    repository), and a resume given the same relative path finds it finished. A fresh run into that --out
    is refused, its log appended; --fresh keeps the finished run aside. (One finished run serves all three.)"""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = set(os.listdir(ROOT))
    first = run("mp2_local.py", "--workers", "2", "--out", "rel/run", *QUICK, cwd=elsewhere)
    assert first.returncode == 0, first.stdout[-3000:]
    out = elsewhere / "rel" / "run"
    assert {"summary.json", "metrics.jsonl", "checkpoint.npz", "ps.log", "w0.log", "w1.log"} <= set(os.listdir(out))
    assert os.listdir(elsewhere) == ["rel"] and os.listdir(elsewhere / "rel") == ["run"]
    assert set(os.listdir(ROOT)) == before  # nothing landed in the repository
    started = time.monotonic()
    done = run("mp2_local.py", "--workers", "2", "--out", "rel/run", "--resume", *QUICK, timeout=120, cwd=elsewhere)
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stdout[-2000:]
    assert "pids" not in done.stdout and time.monotonic() - started < 30

    finished = (out / "summary.json").read_text()
    again = run("mp2_local.py", "--workers", "1", "--out", str(out), *QUICK)
    assert again.returncode != 0 and "holds a finished run" in again.stdout and "--fresh" in again.stdout, again.stdout[-2000:]
    assert (out / "summary.json").read_text() == finished  # untouched
    logs = (out / "ps.log").read_text()
    assert logs.count("====") == 2, logs[:500]  # the second start's log was appended, the first kept
    fresh = run("mp2_local.py", "--workers", "1", "--out", str(out), "--fresh", *QUICK)
    assert fresh.returncode == 0, fresh.stdout[-2000:]
    (aside,) = out.glob("replaced-*")
    assert (aside / "summary.json").read_text() == finished
    assert {p.name for p in aside.iterdir()} >= {"metrics.jsonl", "checkpoint.npz", "best.npz", "worker-0.jsonl"}
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # the new run's events alone, not mixed
    assert "replaced-" in fresh.stdout


# --- mistakes found before the cluster starts --------------------------------------------------------
@pytest.mark.cluster
def test_the_launcher_refuses_a_bad_model_push_or_predictor_before_starting_anything(tmp_path):
    """The cases in one process (tests/cluster.py's run_in_one: TensorFlow starts once for them all)."""
    cases = [
        (["--method", "mp2", "--push", "all"], "nothing to predict"),
        (["--method", "mp2", "--predictor", "no/such/predictor.npz"], "does not exist"),
        (["--push", "conv9"], "conv9 is not a layer"),
    ]
    runs = run_in_one("mp2_local.py", *[["--workers", "2", "--out", str(tmp_path / f"run{i}"), *QUICK, *flags]
                                        for i, (flags, _) in enumerate(cases)])
    for (flags, says), done in zip(cases, runs):
        assert done.returncode != 0 and says in done.stdout, (flags, done.stdout[-2000:])
        assert "pids" not in done.stdout and "Traceback" not in done.stdout, (flags, done.stdout[-2000:])


@pytest.mark.cluster
def test_a_worker_started_by_hand_with_push_all_for_mp2_is_one_line():
    ports = take_ports(2)
    done = run("mp2_worker.py", "--ps_hosts", f"127.0.0.1:{ports[0]}", "--worker_hosts", f"127.0.0.1:{ports[1]}",
               "--task_index", "0", "--method", "mp2", "--push", "all", *QUICK, timeout=120)
    assert done.returncode != 0 and "nothing to predict" in done.stdout and "Traceback" not in done.stdout, done.stdout


# A worker facing a silent port names itself, the address and what listens: tests/test_runtime.py's
# test_worker_facing_a_port_without_a_ps_gives_up_with_a_reason.


@pytest.mark.cluster
def test_a_second_ctrl_c_stops_everything_without_a_traceback(tmp_path):
    launcher = subprocess.Popen(
        [sys.executable, "mp2_local.py", "--workers", "2", "--out", str(tmp_path / "run"), *SMALL, "--epochs", "50"],
        cwd=ROOT, env=launcher_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        preexec_fn=interruptible)
    lines = []
    for line in launcher.stdout:
        lines.append(line)
        if "joined" in line:
            break
    launcher.send_signal(signal.SIGINT)
    time.sleep(0.3)
    launcher.send_signal(signal.SIGINT)
    out, _ = launcher.communicate(timeout=60)
    text = "".join(lines) + out
    assert launcher.returncode == 130, text[-2000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]


# --- an aborted call is asked about, never repeated blindly ------------------------------------------
@pytest.mark.cluster
def test_aborted_pushes_and_pulls_are_recovered_without_sending_or_applying_twice(tmp_path):
    """Each way an aborted call can leave things (the push lost or arrived, the reply waiting, not sent yet
    or applied; an epoch's report lost, or arrived and sent again), and a call gRPC delivered twice: the run
    goes on, says so, counts each recovery, and ends in the uninterrupted run's model and bytes, with one
    record of the epoch from each worker."""
    flags = ["--workers", "2", *QUICK, "--verify-sync"]
    faults = ("0/3/push-lost,1/5/push-landed,0/7/pull-waiting,1/9/pull-applied,0/11/push-twice,1/13/pull-twice,"
              "0/1/report-twice,1/1/report-lost,0/15/train-twice,ps/17/exchange-twice")
    plain = subprocess.Popen([sys.executable, "mp2_local.py", *flags, "--out", str(tmp_path / "plain")], cwd=ROOT,
                             env=launcher_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    faulty = run_with_env({"MP2_INJECT_ABORT": faults}, "mp2_local.py", *flags, "--out", str(tmp_path / "faulty"))
    plain_out, _ = plain.communicate(timeout=300)
    assert plain.returncode == 0 and faulty.returncode == 0, plain_out[-2000:] + faulty.stdout[-3000:]
    for says in ("step 3: TensorFlow's runtime aborted the push", "it had not reached the PS: sent again",
                 "step 5: TensorFlow's runtime aborted the push", "it had reached the PS: not sent again",
                 "step 7:", "step 9:", "it had been applied: read back", "step 11: TensorFlow's runtime aborted the push",
                 "step 13: TensorFlow's runtime aborted the call that takes the PS's reply"):
        assert says in faulty.stdout, (says, faulty.stdout[-3000:])
    # Each worker's report of epoch 1 was sent again: the lost one arrives once, the copy of the other is skipped.
    assert faulty.stdout.count("warning: TensorFlow's runtime aborted the report of epoch 1") == 2, faulty.stdout[-3000:]
    # Whether the other worker had pushed yet decides which: the reply waits, or the PS has yet to send it.
    for step in (7, 13):
        assert re.search(rf"step {step}: .*(the reply still waits: taken again|the PS has not sent it yet: waited for "
                         rf"again)", faulty.stdout), faulty.stdout[-3000:]
    from helpers import npzio

    models = [npzio.read(tmp_path / name / "checkpoint.npz")[0]["model"] for name in ("plain", "faulty")]
    assert models[0].tobytes() == models[1].tobytes()  # bit for bit: nothing sent or applied twice
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("plain", "faulty")]
    for key in ("bytes_pushed_total", "bytes_pulled_total"):
        assert summaries[0][key] == summaries[1][key]
    (record,) = [json.loads(line) for line in (tmp_path / "faulty" / "metrics.jsonl").read_text().splitlines()]
    assert "training: TensorFlow's runtime refused the call as a repeated request; run again" in faulty.stdout
    assert summaries[1]["refused_calls_rerun"] == 1 and summaries[0]["refused_calls_rerun"] == 0
    assert sorted(w["retries"] for w in record["workers"]) == [3, 4]


def run_with_env(extra: dict, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env={**launcher_env(), **extra}, text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
