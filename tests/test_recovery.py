"""Long runs finish: TensorFlow's error formatting stays fast, a stall leaves evidence, and a stalled run
resumes by itself from a checkpoint taken inside the epoch, ending bit for bit as the uninterrupted run."""
from __future__ import annotations

import json
import random
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from helpers import npzio
from runtime import checkpoints, deadline, tferrors
from tests.cluster import SMALL, run, start


# --- TensorFlow's error text ----------------------------------------------------------------------
@pytest.mark.unit
def test_the_linear_parse_gives_tensorflows_own_result():
    rng = random.Random(0)
    pieces = ["abc", "{{node a/b}}", "{{function_node f}}", "{{", "}}", " ", "{{node x y}}", "{{node  z}}", "\n",
              "{{node q-1.2/_3}}x}}", "{{colocation_node c}}"]
    for _ in range(2000):
        message = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 14)))
        assert tferrors.parse_message(message) == tferrors.TENSORFLOW_PARSE(message), message


@pytest.mark.unit
def test_an_error_of_megabytes_is_reported_at_once_on_one_line():
    """A refused repeated call carries the whole request in its text. TensorFlow's own parse of 2 MB of it
    takes hours (quadratic: 80 KB took 94 s on a 2-core Xeon); session.run must raise within seconds."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [])
        check = tf.debugging.check_numerics(x, "request was received twice: " + "\\000\\001" * 250_000, name="big")
        with tf.compat.v1.Session(graph=graph) as session:
            started = time.monotonic()
            with pytest.raises(tf.errors.InvalidArgumentError) as raised:
                session.run(check, {x: float("nan")})
            seconds = time.monotonic() - started
    assert len(raised.value.message) > 2_000_000
    assert seconds < 60, seconds  # a bound for any machine: the unfixed parse needs hours
    text = tferrors.explain(raised.value)
    assert "\n" not in text and len(text) <= 600 and text.startswith("request was received twice"), text[:200]


@pytest.mark.unit
def test_a_stall_writes_the_stacks_and_the_last_tensorflow_error(capfd):
    graph = tf.Graph()
    with graph.as_default():
        q = tf.queue.FIFOQueue(1, [tf.int32], name="never_filled")
        with tf.compat.v1.Session(graph=graph) as session:
            with pytest.raises(tf.errors.DeadlineExceededError):
                deadline.run(session, q.dequeue(), seconds=0.2, what="waiting for the test's queue")
    deadline.evidence()
    err = capfd.readouterr().err
    assert "stall evidence: last TensorFlow error: DeadlineExceededError" in err and "waiting for the test's queue" in err
    assert "Current thread" in err and "test_recovery.py" in err  # faulthandler's stack of this very test


# --- when a run saves -------------------------------------------------------------------------------
class _Every:
    """A method's schedule: steps `s` with s % period == period - 1 exchange (period 1: every step)."""

    def __init__(self, period: int, steps: int) -> None:
        self.period, self.steps = period, steps

    def is_local(self, step: int) -> bool:
        return step % self.period != self.period - 1

    def next_exchange(self, step: int):
        return next((t for t in range(step, self.steps) if not self.is_local(t)), None)


@pytest.mark.unit
def test_checkpoints_fall_on_the_first_exchange_at_or_past_every_nth_step_and_every_epoch_end():
    def saved(method, every, steps_per_epoch, steps):
        return [s + 1 for s in range(steps) if checkpoints.due(method, s, every, steps_per_epoch)]

    assert saved(_Every(1, 100), 10, 40, 100) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert saved(_Every(1, 100), 0, 40, 100) == [40, 80]
    # Syncs every 16th step: after 16, 32, 48 ...; each multiple of 10 is saved at the next sync.
    assert saved(_Every(16, 200), 10, 120, 200) == [16, 32, 48, 64, 80, 96, 112, 120, 128, 144, 160, 176, 192]
    assert saved(_Every(16, 200), 50, 120, 200) == [64, 112, 120, 160]


@pytest.mark.unit
def test_a_worker_keeps_its_two_latest_states_and_finds_the_one_the_ps_resumes_from(tmp_path):
    files = checkpoints.WorkerStateFiles(tmp_path, 3)
    for step in (10, 20, 30):
        files.write(step, {"state/000/x": np.full(2, step, np.float32)}, {"epoch": 0})
    arrays, meta = files.read(20)
    assert arrays["state/000/x"].tolist() == [20, 20] and meta["steps_done"] == 20 and meta["worker"] == 3
    assert files.read(30)[0]["state/000/x"][0] == 30
    with pytest.raises(ValueError, match=r"no state file of step 10 \(worker-3-state.npz is of step 30; "
                                         r"worker-3-state.prev.npz is of step 20\)"):
        files.read(10)


# --- a stalled run resumes by itself ------------------------------------------------------------------
@pytest.mark.cluster
def test_a_stalled_push_is_resumed_from_the_checkpoint_inside_the_epoch_and_ends_as_the_uninterrupted_run(tmp_path):
    """Worker 1's push at step 13 never returns (a partition that never answers, as a colliding request id
    leaves it). Both sides stop at the step deadline with evidence in their logs; the launcher resumes the
    run from the checkpoint of step 10 (every 5 steps, 20 a epoch), and the run ends in the uninterrupted
    run's model, bit for bit, with --verify-sync on, saying it recovered once."""
    flags = ["--workers", "2", *SMALL, "--epochs", "2", "--checkpoint-every", "5", "--verify-sync",
             "--step-timeout", "8"]
    plain_run = start("mp2_local.py", *flags, "--out", str(tmp_path / "plain"))  # beside the faulty one
    faulty = run("mp2_local.py", *flags, "--out", str(tmp_path / "faulty"), timeout=300,
                 env={"MP2_INJECT_ABORT": "1/13/push-hang"})
    out, _ = plain_run.communicate(timeout=300)
    plain = subprocess.CompletedProcess(plain_run.args, plain_run.returncode, out)
    assert plain.returncode == 0 and faulty.returncode == 0, plain.stdout[-2000:] + faulty.stdout[-4000:]
    assert ("[launcher] recovery 1/5: the run stopped at step 13 (worker 1 sent nothing for 8 s at step 13"
            in faulty.stdout), faulty.stdout[-4000:]
    assert "resuming from its checkpoint of step 10" in faulty.stdout
    assert "worker 1: joined; 20 steps per epoch, starting at step 10" in faulty.stdout
    models = [npzio.read(tmp_path / name / "checkpoint.npz")[0]["model"] for name in ("plain", "faulty")]
    assert models[0].tobytes() == models[1].tobytes()
    curves = [[(r["test_acc"], r["loss"], r["bytes_pushed"]) for r in
               map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())] for name in ("plain", "faulty")]
    assert curves[0] == curves[1]
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("plain", "faulty")]
    assert summaries[0]["recoveries"] == []
    (stop,) = summaries[1]["recoveries"]
    assert stop["step"] == 13 and stop["resumes_after_step"] == 10 and "worker 1 sent nothing" in stop["cause"]
    assert summaries[1]["resumed_from_step"] == 10
    for log in ("ps.log", "w1.log"):  # both sides left the stacks and the last error behind
        text = (tmp_path / "faulty" / log).read_text()
        assert "stall evidence: last TensorFlow error: DeadlineExceededError" in text, text[-2000:]
        assert "the Python stacks of every thread follow" in text and "(most recent call first)" in text


@pytest.mark.cluster
def test_a_run_that_fails_again_at_the_same_step_stops_instead_of_looping(tmp_path):
    """A stall that comes back at the same step is not a passing one: the launcher stops after the second."""
    flags = ["--workers", "2", *SMALL, "--epochs", "1", "--checkpoint-every", "5", "--step-timeout", "5"]
    done = run("mp2_local.py", *flags, "--out", str(tmp_path), timeout=300,
               env={"MP2_INJECT_ABORT": "0/7/push-hang", "MP2_INJECT_EVERY_ATTEMPT": "1"})
    assert done.returncode == 75, done.stdout[-3000:]
    assert done.stdout.count("[launcher] recovery ") == 1
    assert "[launcher] the run failed twice at step 7: not a passing stall; stopping" in done.stdout


@pytest.mark.unit
def test_the_watchdog_records_the_stop_before_it_ends_the_process(monkeypatch, capfd):
    """A call stuck past its deadline and grace: the PS's hook records the stop (interruptions.jsonl), the
    evidence and the reason go to the log, and the process exits STALLED so that a launcher resumes it."""
    noted, exits = [], []
    monkeypatch.setattr(deadline, "ON_GIVE_UP", [noted.append])
    monkeypatch.setattr(deadline.os, "_exit", exits.append)
    deadline._give_up("step 12", 35.0)
    assert noted == ["step 12: no answer within 35 s"] and exits == [deadline.STALLED]
    err = capfd.readouterr().err
    assert "stall evidence: the Python stacks" in err and "error: step 12: no answer within 35 s; stopping" in err
