"""The network benchmark: time to target, derived columns, its report files, the namespace commands and
their cleanup, the supervision of a run, and one real unshaped run on 127.0.0.1."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import emulated_hosts, network, network_run
from reports import accuracy
from reports import network as report
from runtime.launcher import Child

ROOT = Path(__file__).resolve().parent.parent


def _row(method, final, up, down, rate="100mbit", workers=4, link=None, at_best_val=None, best_val=None):
    """A run's row; without validation figures, a record made before the validation split."""
    row = {"rate": rate, "workers": workers, "method": method, "network": "namespaces", "epochs": 3, "steps": 360,
           "test_acc_at_best_val": at_best_val, "best_val_acc": best_val, "final_test_acc": final, "wall_s": 30.0, "elapsed_s": 40.0, "ps_step_ms": 80.0,
           "worker_step_ms": 70.0, "worker_comm_ms": 50.0, "bytes_up": up, "bytes_down": down, "flags": "--x"}
    link = link or {}
    for name in ("link_rx_bytes", "link_tx_bytes", "link_rx_packets", "link_tx_packets"):
        row[name] = link.get(name, "")
    return row


def _curve(method, points, rate="100mbit", workers=4, val=None):
    return [{"rate": rate, "workers": workers, "method": method, "epoch": i + 1, "wall_s": wall, "test_acc": acc,
             "val_acc": None if val is None else val[i], "bytes_cum": 1000 * (i + 1)} for i, (wall, acc) in enumerate(points)]


# --- time to target and the derived columns ------------------------------------------------------

@pytest.mark.unit
def test_time_to_target_is_the_first_point_reaching_it():
    curve = [(30.0, 0.86), (10.0, 0.80), (20.0, 0.85)]  # out of order on purpose
    assert report.time_to_target(curve, 0.85) == 20.0
    assert report.time_to_target(curve, 0.80) == 10.0
    assert report.time_to_target(curve, 0.861) is None


@pytest.mark.unit
def test_derive_sets_target_times_and_ratios_per_grid_point():
    # 360 steps x 4 workers: 50 B per worker-step arrive beyond headers and accounted bytes.
    rows = [_row("baseline", 0.86, 100_000, 1000, link={"link_rx_bytes": 100_000 + 66 + 72_000, "link_tx_bytes": 1300,
                                                        "link_rx_packets": 1, "link_tx_packets": 2}),
            _row("mp2", 0.87, 60, 1000),
            _row("topk", 0.70, 10, 30),
            _row("baseline", 0.50, 500, 500, rate="1gbit")]
    curves = (_curve("baseline", [(10.0, 0.80), (20.0, 0.86)]) + _curve("mp2", [(6.0, 0.84), (12.0, 0.87)])
              + _curve("topk", [(5.0, 0.70)]) + _curve("baseline", [(3.0, 0.50)], rate="1gbit"))
    derived = {(r["rate"], r["method"]): r for r in report.derive(rows, curves, margin=0.01, fixed=None)}
    base, mp2, topk = derived[("100mbit", "baseline")], derived[("100mbit", "mp2")], derived[("100mbit", "topk")]
    assert base["target_acc"] == pytest.approx(0.85)
    assert derived[("1gbit", "baseline")]["target_acc"] == pytest.approx(0.49)  # its own baseline, not 100mbit's
    assert base["time_to_target_s"] == 20.0 and mp2["time_to_target_s"] == 12.0
    assert mp2["time_vs_baseline"] == pytest.approx(0.6)
    assert topk["time_to_target_s"] == "" and topk["time_vs_baseline"] == ""  # never reached
    assert mp2["bytes_vs_baseline"] == pytest.approx(1060 / 101_000, abs=1e-4)
    assert base["link_rx_vs_up"] == pytest.approx(1.7207) and base["link_tx_vs_down"] == pytest.approx(1.3)
    assert base["payload_rx_vs_up"] == pytest.approx(1.72)
    assert base["payload_tx_vs_down"] == pytest.approx((1300 - 132) / 1000)
    assert base["unaccounted_rx_per_worker_step"] == pytest.approx(50.0)
    assert base["unaccounted_tx_per_worker_step"] == pytest.approx(round(168 / 1440, 1))
    assert mp2["link_rx_vs_up"] == ""  # no counters (loopback): nothing made up
    fixed = {(r["rate"], r["method"]): r for r in report.derive(rows, curves, margin=0.01, fixed=0.70)}
    assert fixed[("100mbit", "topk")]["time_to_target_s"] == 5.0
    assert fixed[("100mbit", "baseline")]["time_to_target_s"] == 10.0


@pytest.mark.unit
def test_targets_are_set_and_reached_on_validation_accuracy_where_the_runs_have_it(tmp_path):
    # 100mbit: records with validation figures. Their best test epochs (epoch 1) would set the target at
    # 0.85 and reach it at 10 s and 6 s; validation sets it at 0.83 - 0.01 and reaches it at 20 s and 12 s.
    rows = [_row("baseline", 0.84, 1000, 1000, at_best_val=0.84, best_val=0.83),
            _row("mp2", 0.85, 60, 1000, at_best_val=0.85, best_val=0.82),
            _row("baseline", 0.50, 500, 500, rate="1gbit"), _row("mp2", 0.49, 50, 500, rate="1gbit")]
    curves = (_curve("baseline", [(10.0, 0.86), (20.0, 0.84)], val=[0.80, 0.83])
              + _curve("mp2", [(6.0, 0.90), (12.0, 0.85)], val=[0.78, 0.82])
              + _curve("baseline", [(3.0, 0.55), (6.0, 0.50)], rate="1gbit")
              + _curve("mp2", [(2.0, 0.49)], rate="1gbit"))
    derived = {(r["rate"], r["method"]): r for r in report.derive(rows, curves, margin=0.01, fixed=None)}
    base, mp2 = derived[("100mbit", "baseline")], derived[("100mbit", "mp2")]
    assert (base["target_acc"], base["target_on"]) == (pytest.approx(0.82), "validation")
    assert (base["time_to_target_s"], mp2["time_to_target_s"]) == (20.0, 12.0)
    # 1gbit: records made before the split: on test, from the baseline's final accuracy (not its best, 0.55).
    old = derived[("1gbit", "baseline")]
    assert (old["target_acc"], old["target_on"], old["time_to_target_s"]) == (pytest.approx(0.49), "test", 3.0)
    assert derived[("1gbit", "mp2")]["time_to_target_s"] == 2.0
    # A fixed target is reached on validation accuracy too.
    fixed = {(r["rate"], r["method"]): r for r in report.derive(rows, curves, margin=0.01, fixed=0.80)}
    assert (fixed[("100mbit", "baseline")]["time_to_target_s"], fixed[("100mbit", "mp2")]["time_to_target_s"]) == (10.0, 12.0)
    report.write_results(tmp_path, rows, curves, 0.01, None)
    table = (tmp_path / "results.md").read_text()
    assert "| 100mbit | 4 | baseline | 0.8200 | validation | 20.0 | 100.0 % | 0.8400 | 0.8400 |" in table
    assert "| 100mbit | 4 | mp2 | 0.8200 | validation | 12.0 | 60.0 % | 0.8500 | 0.8500 |" in table
    assert "| 1gbit | 4 | baseline | 0.4900 | test† | 3.0 | 100.0 % | 0.5000† | 0.5000 |" in table
    assert "0.8600" not in table and "0.5500" not in table and accuracy.FOOTNOTE in table
    assert "minus 0.01, reached on validation accuracy" in table and "reached on test accuracy" in table
    with open(tmp_path / "curves.csv", newline="") as f:
        assert [r["val_acc"] for r in csv.DictReader(f) if r["rate"] == "100mbit"] == ["0.8", "0.83", "0.78", "0.82"]


@pytest.mark.unit
def test_results_files_merge_by_grid_point_and_replot_from_csv(tmp_path):
    first = [_row("baseline", 0.86, 1000, 1000), _row("mp2", 0.87, 60, 1000)]
    curves = _curve("baseline", [(10.0, 0.80), (20.0, 0.86)]) + _curve("mp2", [(6.0, 0.84), (12.0, 0.87)])
    report.write_results(tmp_path, first, curves, 0.01, None)
    # A second invocation reruns mp2 only: its row and curve replace the old ones, the baseline stays.
    report.write_results(tmp_path, [_row("mp2", 0.88, 70, 1000)], _curve("mp2", [(5.0, 0.88)]), 0.01, None)
    with open(tmp_path / "results.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"baseline", "mp2"}
    assert rows["mp2"]["final_test_acc"] == "0.88" and rows["mp2"]["bytes_up"] == "70"
    assert float(rows["mp2"]["time_to_target_s"]) == 5.0 and float(rows["mp2"]["time_vs_baseline"]) == 0.25
    with open(tmp_path / "curves.csv", newline="") as f:
        assert [(r["method"], r["epoch"]) for r in csv.DictReader(f)] == [("baseline", "1"), ("baseline", "2"), ("mp2", "1")]
    table = (tmp_path / "results.md").read_text()
    assert "| 100mbit | 4 | baseline | 0.8500 | test† | 20.0 | 100.0 % |" in table
    assert "| 100mbit | 4 | mp2 | 0.8500 | test† | 5.0 | 25.0 % | 0.8800† |" in table
    assert "Emulated hosts" in table and "Not shaped" not in table
    # Re-derived from the CSVs alone, the plots included.
    png = tmp_path / "network-w4.png"
    png.unlink()
    report.rewrite(tmp_path, 0.01, None)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # --report-only re-derives from the CSVs: a fixed target changes the times, nothing runs.
    assert network.main(["--report-only", "--target", "0.84", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "results.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["baseline"]["time_to_target_s"]) == 20.0 and float(rows["mp2"]["time_to_target_s"]) == 5.0
    assert float(rows["baseline"]["target_acc"]) == 0.84


@pytest.mark.unit
def test_report_from_hand_written_csvs_orders_rates_and_methods(tmp_path):
    columns = "rate,workers,method,network,delay,epochs,steps,best_test_acc,final_test_acc,wall_s,elapsed_s,ps_step_ms," \
              "worker_step_ms,worker_comm_ms,bytes_up,bytes_down,link_rx_bytes,link_tx_bytes,link_rx_packets," \
              "link_tx_packets,flags\n"
    (tmp_path / "results.csv").write_text(columns + "".join(
        f"{rate},2,{method},loopback (not shaped),,1,60,{acc},{acc},9.0,10.0,150.0,100.0,60.0,{up},{down},,,,,--x\n"
        for rate, method, acc, up, down in (("unshaped", "baseline", 0.9, 4000, 4100), ("1gbit", "topk", 0.7, 40, 4100),
                                            ("1gbit", "baseline", 0.8, 4000, 4100), ("100mbit", "baseline", 0.8, 4000, 4100),
                                            ("1gbit", "localsgd", 0.85, 400, 410))))
    (tmp_path / "curves.csv").write_text("rate,workers,method,epoch,wall_s,test_acc,bytes_cum\n"
                                         "1gbit,2,baseline,1,9.0,0.8,8100\n1gbit,2,localsgd,1,3.0,0.85,810\n"
                                         "1gbit,2,topk,1,4.0,0.7,4140\n100mbit,2,baseline,1,9.0,0.8,8100\n"
                                         "unshaped,2,baseline,1,9.0,0.9,8100\n")
    derived = report.rewrite(tmp_path, 0.01, None)
    # Slowest rate first, unshaped last; within a grid point the grid's order of methods.
    assert [(r["rate"], r["method"]) for r in derived] == [("100mbit", "baseline"), ("1gbit", "baseline"),
                                                           ("1gbit", "localsgd"), ("1gbit", "topk"),
                                                           ("unshaped", "baseline")]
    table = (tmp_path / "results.md").read_text()
    assert "| 1gbit | 2 | localsgd | 0.7900 | test† | 3.0 | 33.3 % | 0.8500† |" in table
    assert "| 1gbit | 2 | topk | 0.7900 | test† | not reached |" in table
    assert "Not shaped" in table and "Emulated hosts" not in table
    assert (tmp_path / "network-w2.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "results.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames == report.RESULT_COLUMNS


@pytest.mark.unit
def test_a_report_without_results_says_so(tmp_path):
    with pytest.raises(report.ReportError, match="no results.csv in"):
        report.rewrite(tmp_path, 0.01, None)
    assert network.main(["--report-only", "--out", str(tmp_path)]) == 2


@pytest.mark.unit
def test_the_report_orders_methods_as_the_grid_does():
    assert list(report.METHOD_ORDER) == list(network.METHOD_VARIANTS)


@pytest.mark.cluster
def test_the_report_from_the_command_line(tmp_path):
    report.write_results(tmp_path, [_row("baseline", 0.86, 1000, 1000)], _curve("baseline", [(10.0, 0.86)]), 0.01, None)
    (tmp_path / "results.md").unlink()
    done = subprocess.run([sys.executable, "-m", "reports", "network", str(tmp_path), "--target", "0.8"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| 100mbit | 4 | baseline | 0.8000 | test† | 10.0 |" in (tmp_path / "results.md").read_text()
    missing = subprocess.run([sys.executable, "-m", "reports", "network", str(tmp_path / "none")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no results.csv" in missing.stderr


# --- emulated hosts ------------------------------------------------------------------------------

def _commands(topology):
    return [c for _, commands in topology.setup_steps() for c in commands]


@pytest.mark.unit
def test_topology_shapes_both_ends_of_every_cable():
    topology = emulated_hosts.Topology("mp2nT", 2, "100mbit")
    commands = _commands(topology)
    assert topology.namespaces == ["mp2nTsw", "mp2nTps", "mp2nTw0", "mp2nTw1"]
    assert [c[3] for c in commands if c[:3] == ["ip", "netns", "add"]] == topology.namespaces
    tbf = [(c[3], c[8]) for c in commands if "tbf" in c]
    # Each host's egress (its sending) and the switch port's egress (its receiving), separately.
    assert tbf == [("mp2nTps", "eth0"), ("mp2nTsw", "p0"), ("mp2nTw0", "eth0"), ("mp2nTsw", "p1"),
                   ("mp2nTw1", "eth0"), ("mp2nTsw", "p2")]
    assert all(c[c.index("rate") + 1] == "100mbit" for c in commands if "tbf" in c)
    addresses = [c[c.index("add") + 1] for c in commands if c[3:5] == ["addr", "add"]]
    assert addresses == ["10.213.0.1/24", "10.213.0.10/24", "10.213.0.11/24"]
    assert not any("tc" in c for c in _commands(emulated_hosts.Topology("mp2nT", 2, emulated_hosts.UNSHAPED)))


@pytest.mark.unit
def test_delay_puts_netem_in_front_of_tbf():
    commands = emulated_hosts.shaping_commands("ns", "eth0", "1gbit", "2ms")
    assert commands[0][-6:] == ["root", "handle", "1:", "netem", "delay", "2ms"]
    assert commands[1][commands[1].index("parent") + 1] == "1:" and "tbf" in commands[1]
    assert int(commands[1][commands[1].index("burst") + 1]) == 125_000  # 1 ms of 1 Gbit/s
    assert emulated_hosts.rate_bits("100mbit") == 10**8
    for bad in ("fast", "0mbit", "mbit"):
        with pytest.raises(ValueError):
            emulated_hosts.rate_bits(bad)


class FailingIp:
    """Stands in for the `ip` command: records every call and fails the n-th."""

    def __init__(self, fail_at: int | None):
        self.fail_at, self.calls = fail_at, []

    def __call__(self, command):
        self.calls.append(command)
        if command[:3] != ["ip", "netns", "del"] and len(self.calls) == self.fail_at:
            raise emulated_hosts.SetupError("simulated failure")


@pytest.mark.unit
def test_a_failing_setup_step_deletes_every_namespace_made_so_far():
    topology = emulated_hosts.Topology("mp2nT", 3, "100mbit")
    setup = _commands(topology)
    fail_at = setup.index(next(c for c in setup if "tbf" in c and "mp2nTw1" in c)) + 1
    ip = FailingIp(fail_at)
    with pytest.raises(emulated_hosts.SetupError, match="simulated"):
        with emulated_hosts.emulated_hosts(topology, runner=ip):
            pytest.fail("the block must not run when set-up fails")
    deleted = [c[3] for c in ip.calls if c[:3] == ["ip", "netns", "del"]]
    assert deleted == ["mp2nTw1", "mp2nTw0", "mp2nTps", "mp2nTsw"]  # w2 was never made


@pytest.mark.unit
def test_an_error_in_the_run_deletes_every_namespace():
    topology = emulated_hosts.Topology("mp2nT", 2, emulated_hosts.UNSHAPED)
    ip = FailingIp(None)
    with pytest.raises(RuntimeError):
        with emulated_hosts.emulated_hosts(topology, runner=ip):
            raise RuntimeError("the run failed")
    assert [c[3] for c in ip.calls if c[:3] == ["ip", "netns", "del"]] == list(reversed(topology.namespaces))


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="creates real network namespaces: needs root")
def test_real_namespaces_go_when_setup_fails_halfway():
    topology = emulated_hosts.Topology(f"mp2nt{os.getpid()}", 2, "100mbit")
    calls = []

    def ip_then_fail(command):
        calls.append(command)
        if "tbf" in command and topology.hosts[1] in command:
            raise emulated_hosts.SetupError("simulated failure after real set-up")
        emulated_hosts.run_checked(command)

    with pytest.raises(emulated_hosts.SetupError):
        with emulated_hosts.emulated_hosts(topology, runner=ip_then_fail):
            pass
    assert any(c[:3] == ["ip", "netns", "add"] for c in calls)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert topology.prefix not in listed


@pytest.mark.unit
def test_a_failing_process_stops_the_others(tmp_path, capsys):
    children = [Child("ps", ["-c", "import time; time.sleep(60)"]),
                Child("w0", ["-c", "import sys; print('error: boom'); sys.exit(3)"])]
    (tmp_path / "w0.log").write_text("an earlier run's lines\n")
    with pytest.raises(network_run.RunError, match=r"^w0 exited with 3; see the logs in "):
        network_run.supervise(children, tmp_path, timeout=50)
    assert all(child.proc.poll() is not None for child in children)  # the sleeping PS is gone too
    log = (tmp_path / "w0.log").read_text()
    assert "boom" in log and "earlier run" not in log  # a rerun's logs start afresh
    assert "  [w0] error: boom\n" in capsys.readouterr().out


@pytest.mark.unit
def test_a_run_over_its_time_is_stopped(tmp_path):
    children = [Child("ps", ["-c", "import time; time.sleep(60)"])]
    with pytest.raises(network_run.RunError, match="the run took over 1 s"):
        network_run.supervise(children, tmp_path, timeout=1)
    assert children[0].proc.poll() is not None


@pytest.mark.unit
def test_progress_shows_the_ps_evaluations_and_every_error():
    assert network_run.progress_line("ps", "epoch 1 test_acc 0.8\n") == "  epoch 1 test_acc 0.8\n"
    assert network_run.progress_line("ps", "step 3 loss 0.2\n") is None
    assert network_run.progress_line("w1", "epoch 1 test_acc 0.8\n") is None
    assert network_run.progress_line("w1", "error: lost the PS\n") == "  [w1] error: lost the PS\n"
    notice = "I0000 00:00:1.5   31936 port.cc:153] oneDNN custom operations are on ... round-off errors ...\n"
    assert network_run.progress_line("ps", notice) is None and network_run.progress_line("w0", notice) is None


@pytest.mark.unit
def test_each_process_runs_inside_its_hosts_namespace(tmp_path):
    spec = network_run.RunSpec("baseline", "1gbit", 2, ["--method", "baseline", "--predictor", "/p.npz"], tmp_path)
    children = network_run.run_children(spec, "10.213.0.1:2222", ["10.213.0.10:2222", "10.213.0.11:2222"],
                                        ["nsps", "nsw0", "nsw1"])
    assert [c.name for c in children] == ["ps", "w0", "w1"]
    assert [c.command[:5] for c in children] == [["ip", "netns", "exec", ns, sys.executable] for ns in ("nsps", "nsw0", "nsw1")]
    assert children[0].argv[0].endswith("mp2_ps.py") and "--predictor" in children[0].argv
    assert children[2].argv[0].endswith("mp2_worker.py") and children[2].argv[children[2].argv.index("--task_index") + 1] == "1"
    loopback = network_run.run_children(spec, "127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], None)
    assert all(c.command[0] == sys.executable for c in loopback)


@pytest.mark.cluster
def test_bad_flags_are_one_line(tmp_path):
    for argv, expected in ((["--methods", "baseline,fast"], "unknown fast"),
                           (["--methods", "mp2"], "need --predictor"),
                           (["--rates", "quick"], "not a tc rate"),
                           (["--method-flags", "dgc"], "METHOD=FLAGS")):
        done = subprocess.run([sys.executable, "-m", "benchmarks.network", *argv, "--out", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("network:")]
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr


# --- one real run --------------------------------------------------------------------------------

@pytest.mark.cluster
def test_a_real_unshaped_run_writes_its_row(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.network", "--unshaped-loopback", "--methods", "baseline",
         "--rates", "100mbit", "--workers", "2", "--epochs", "1", "--dataset", "synthetic", "--out", str(out),
         "--runs", str(runs), "--", "--worker-batch", "50"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "UNSHAPED" in done.stdout
    with open(out / "results.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    import models

    values = models.get("lenet5", 10).layout.total
    steps, workers = int(row["steps"]), 2
    assert (row["method"], row["workers"], row["network"]) == ("baseline", "2", "loopback (not shaped)")
    # Baseline: every worker pushes and receives the whole model (float32) each step, plus the control word.
    assert int(row["bytes_up"]) == steps * workers * 4 * values
    assert int(row["bytes_down"]) == steps * workers * (4 * values + 16)
    assert row["link_rx_bytes"] == "" and row["link_tx_bytes"] == ""  # loopback: not measured
    with open(out / "curves.csv", newline="") as f:
        [curve] = list(csv.DictReader(f))
    # A run with the validation split: the target is its validation accuracy - 0.01, reached at its only epoch.
    assert row["target_on"] == "validation" and float(row["best_val_acc"]) == float(curve["val_acc"])
    assert float(row["time_to_target_s"]) == float(curve["wall_s"])
    assert float(row["test_acc_at_best_val"]) == float(row["final_test_acc"]) == float(curve["test_acc"])
    assert float(row["target_acc"]) == pytest.approx(float(curve["val_acc"]) - 0.01)
    assert "Not shaped" in (out / "results.md").read_text()
    assert (out / "network-w2.png").exists() and not (out / "commands.txt").exists()  # --out gets committed
    log = (runs / "commands.txt").read_text()
    assert "mp2_ps.py" in log and '"commit"' in log.splitlines()[1]
    assert str(ROOT) not in row["flags"]
