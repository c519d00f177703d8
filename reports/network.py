"""The network benchmark's report (benchmarks/network.py): targets, times to target and ratios to the
baseline derived from its runs' rows and curves, written as results.csv, curves.csv, results.md and a
PNG per worker count.

    python -m reports network results/network [--margin 0.01 | --target 0.86]

re-derives all of it from the CSVs in that folder (what `benchmarks/network.py --report-only` does).
"""
from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

from reports import accuracy
from reports.errors import ReportError

# A pure TCP ACK with timestamps on Ethernet: 14 (Ethernet) + 20 (IPv4) + 32 (TCP with options).
FRAME_OVERHEAD = 66
# Rows and curves go in the grid's order of methods (benchmarks/network.py's METHOD_VARIANTS); others last.
METHOD_ORDER = ("baseline", "localsgd", "powersgd", "mp2-online", "mp2-online-subset", "mp2", "mp2-subset", "topk",
                "dgc", "wnn")
RESULT_COLUMNS = [
    "rate", "workers", "method", "network", "delay", "epochs", "steps", "target_acc", "target_on", "time_to_target_s",
    "time_vs_baseline", "test_acc_at_best_val", "best_val_epoch", "best_val_acc", "final_test_acc", "wall_s", "elapsed_s",
    "ps_step_ms", "worker_step_ms", "worker_comm_ms", "bytes_up", "bytes_down", "bytes_vs_baseline", "link_rx_bytes",
    "link_tx_bytes", "link_rx_packets", "link_tx_packets", "link_rx_vs_up", "link_tx_vs_down", "payload_rx_vs_up", "payload_tx_vs_down",
    "unaccounted_rx_per_worker_step", "unaccounted_tx_per_worker_step", "flags",
]
CURVE_COLUMNS = ["rate", "workers", "method", "epoch", "wall_s", "test_acc", "val_acc", "bytes_cum"]
# What a grid point's target is reached on: validation accuracy where every run there has it, else test
# accuracy (records made before the validation split), which the report marks.
ON = {"val_acc": "validation", "test_acc": "test"}



# --- derived figures -----------------------------------------------------------------------------

def time_to_target(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The wall time of the first (wall, accuracy) point at or above `target`; None if none is."""
    for wall, accuracy in sorted(curve):
        if accuracy >= target:
            return wall
    return None


def _point(row: dict) -> tuple[str, int]:
    return (row["rate"], int(row["workers"]))


def measure(rows: list[dict]) -> str:
    """The accuracy a grid point's target is reached on, given its rows: "val_acc" when every run there has
    validation figures, else "test_acc"."""
    return "val_acc" if rows and all(r.get("best_val_acc") not in ("", None) for r in rows) else "test_acc"


def targets(rows: list[dict], margin: float, fixed: float | None) -> dict[tuple[str, int], tuple[float, str]]:
    """(target accuracy, what it is reached on) of every (rate, workers): `fixed`, else the baseline's best
    validation accuracy there minus `margin`; on test accuracy (a point with a record made before the
    validation split), the baseline's test accuracy by reports.accuracy minus `margin`, never its best test epoch."""
    out = {}
    for point in {_point(r) for r in rows}:
        mine = [r for r in rows if _point(r) == point]
        on = measure(mine)
        base = next((r for r in mine if r["method"] == "baseline"), None)
        if fixed is not None:
            out[point] = (fixed, on)
        elif base is not None:
            reference = float(base["best_val_acc"]) if on == "val_acc" else accuracy.honest_accuracy(base)[0]
            out[point] = (round(reference - margin, 6), on)
    return out


def _ratio(value, reference) -> float | str:
    return round(float(value) / float(reference), 4) if value not in ("", None) and reference not in ("", None, 0) else ""


def derive(rows: list[dict], curves: list[dict], margin: float, fixed: float | None) -> list[dict]:
    """`rows` with target, time to target and the ratios to the baseline at the same grid point."""
    goal = targets(rows, margin, fixed)
    baseline = {_point(r): r for r in rows if r["method"] == "baseline"}
    reached = {}
    for r in rows:
        point = _point(r)
        if point not in goal:
            reached[(*point, r["method"])] = None
            continue
        target, on = goal[point]
        curve = [(float(c["wall_s"]), float(c[on])) for c in curves
                 if (*_point(c), c["method"]) == (*point, r["method"]) and c.get(on) not in ("", None)]
        reached[(*point, r["method"])] = time_to_target(curve, target)
    out = []
    for r in rows:
        point = (r["rate"], int(r["workers"]))
        base = baseline.get(point)
        t = reached[(*point, r["method"])]
        t_base = reached.get((*point, "baseline"))
        total = int(r["bytes_up"]) + int(r["bytes_down"])
        target, on = goal.get(point, ("", ""))
        row = {**r, "target_acc": target, "target_on": ON.get(on, ""), "time_to_target_s": "" if t is None else t,
               "time_vs_baseline": _ratio(t, t_base) if t is not None and t_base else "",
               "bytes_vs_baseline": _ratio(total, int(base["bytes_up"]) + int(base["bytes_down"])) if base else "",
               "link_rx_vs_up": _ratio(r["link_rx_bytes"], r["bytes_up"]),
               "link_tx_vs_down": _ratio(r["link_tx_bytes"], r["bytes_down"])}
        # Link bytes less one frame's headers per packet: the TCP payload (ACKs carry none). What is
        # left above the accounted bytes is RPC framing and the handshake, per worker and step.
        worker_steps = int(r["steps"]) * int(r["workers"])
        for direction, accounted in (("rx", "bytes_up"), ("tx", "bytes_down")):
            name = accounted.removeprefix("bytes_")
            if r[f"link_{direction}_bytes"] not in ("", None):
                payload = int(r[f"link_{direction}_bytes"]) - FRAME_OVERHEAD * int(r[f"link_{direction}_packets"])
                row[f"payload_{direction}_vs_{name}"] = _ratio(payload, r[accounted])
                row[f"unaccounted_{direction}_per_worker_step"] = round((payload - int(r[accounted])) / worker_steps, 1)
            else:
                row[f"payload_{direction}_vs_{name}"] = row[f"unaccounted_{direction}_per_worker_step"] = ""
        out.append(row)
    return out


# --- order ---------------------------------------------------------------------------------------

def rate_order(rate: str) -> tuple[int, float]:
    """Slowest tc rate first; the unshaped runs (and any rate that is not a tc rate) last."""
    for unit, scale in {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}.items():
        if rate.lower().endswith(unit):
            try:
                return (0, float(rate.lower().removesuffix(unit)) * scale)
            except ValueError:
                break
    return (1, 0.0)


def method_order(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _sort_key(row: dict) -> tuple:
    return (int(row["workers"]), *rate_order(row["rate"]), *method_order(row["method"]))


# --- files ---------------------------------------------------------------------------------------

def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """`rows` as CSV with `columns` (extra keys dropped), written whole then renamed into place."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def merge(old: list[dict], new: list[dict], key: Callable[[dict], tuple]) -> list[dict]:
    """`old` with every row whose key a `new` row has replaced by the new ones (in grid order)."""
    replaced = {key(r) for r in new}
    return [r for r in old if key(r) not in replaced] + new


def _key(row: dict) -> tuple[str, int, str]:
    return (row["rate"], int(row["workers"]), row["method"])


def _mb(value) -> str:
    return "" if value in ("", None) else f"{int(value) / 1e6:.1f}"


def _pct(value) -> str:
    return "" if value in ("", None) else f"{100 * float(value):.1f} %"


def markdown_table(rows: list[dict]) -> str:
    """The derived rows as a markdown table, grid point by grid point."""
    head = ["rate", "workers", "method", "target acc", "target on", "time to target (s)", "vs baseline", accuracy.HEADER,
            "final acc", "wall (s)", "PS s/step (ms)", "up (MB)", "down (MB)", "bytes vs baseline", "PS link in (MB)",
            "PS link out (MB)", "TCP payload in / up", "TCP payload out / down",
            "unaccounted in / out (B per worker-step)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=_sort_key):
        t = r["time_to_target_s"]
        cells = [r["rate"], str(r["workers"]), r["method"], f"{float(r['target_acc']):.4f}" if r["target_acc"] != "" else "",
                 r["target_on"] + ("†" if r["target_on"] == ON["test_acc"] else ""),
                 f"{float(t):.1f}" if t != "" else "not reached", _pct(r["time_vs_baseline"]),
                 accuracy.cell(r), f"{float(r['final_test_acc']):.4f}", f"{float(r['wall_s']):.1f}",
                 f"{float(r['ps_step_ms']):.1f}", _mb(r["bytes_up"]), _mb(r["bytes_down"]),
                 _pct(r["bytes_vs_baseline"]), _mb(r["link_rx_bytes"]), _mb(r["link_tx_bytes"]),
                 f"{float(r['payload_rx_vs_up']):.3f}" if r["payload_rx_vs_up"] != "" else "",
                 f"{float(r['payload_tx_vs_down']):.3f}" if r["payload_tx_vs_down"] != "" else "",
                 f"{float(r['unaccounted_rx_per_worker_step']):.0f} / {float(r['unaccounted_tx_per_worker_step']):.0f}"
                 if r.get("unaccounted_rx_per_worker_step", "") != "" else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return accuracy.with_footnote(lines, (accuracy.honest_accuracy(r)[1] for r in rows))


def target_note(rows: list[dict], margin: float, fixed: float | None) -> str:
    """How the table's targets were set and what they were reached on."""
    on = {r["target_on"] for r in rows}
    on_val = fixed if fixed is not None else f"the baseline's best validation accuracy minus {margin}"
    on_test = fixed if fixed is not None else f"the baseline's test accuracy (at best val / final) minus {margin}"
    clauses = []
    if ON["val_acc"] in on:
        clauses.append(f"{on_val}, reached on validation accuracy (*target on*: validation)")
    if ON["test_acc"] in on:
        clauses.append(f"where a run has no validation figures (*target on*: test†, a record made before the validation "
                       f"split), {on_test}, reached on test accuracy")
    return ("Target at each grid point: " + "; ".join(clauses) + ". No target is set or reached on the best test epoch."
            if clauses else "")


EXPLANATION = """\
How to read it. *up* and *down* are the bytes the runtime accounts: the tensors each worker pushes
and each reply it receives (with the reply's 16-byte control word), summed over workers and steps;
mp2-subset's workers read the predictor file themselves (the handshake compares its SHA-256), so no
predictor weights cross the network. *PS link in/out* are the
PS's interface counters (received/transmitted, read before and after the run). They count every
packet on the PS's cable, each with 66 bytes of Ethernet, IPv4 and TCP headers: the data, the TCP
ACKs of the other direction (a pure ACK is those 66 bytes alone, so a direction that carries
little, such as MP²'s or Top-k's pushes, is inflated most), and TCP payload the runtime does not
account: HTTP/2 and gRPC framing, the protobuf envelope of every tensor, TensorFlow's own RPCs (a
RunGraph call on the PS for each of a worker's session runs, a RecvTensor request for every tensor
fetched) and the handshake (the configuration check, and the starting model sent to every worker
before the first step). A veth packet may carry up to 64 KB behind one header (segmentation
offload), and how many are split depends on the shaping, so the raw counters move with the rate
for the same traffic; subtracting 66 bytes per counted packet gives the TCP payload, which does
not: *TCP payload in / up* and *out / down* compare it with the accounted bytes, and *unaccounted*
is what remains of it, per worker and step. A physical card with a 1500-byte MTU would add about
4.6 % of headers on top of the payload (66 bytes per 1448).
Times to target come from the PS's per-epoch evaluation (the only one there is), so they are
multiples of an epoch's time; wall time starts when every worker has joined. PS s/step is the PS's
wall time over its steps (epoch-end evaluation included).
"""


def notes_for(rows: list[dict]) -> list[str]:
    """What the table's readers must know about how its rows were run."""
    notes = []
    delays = sorted({r.get("delay") or "" for r in rows if r["network"] == "namespaces"} - {""})
    if any(r["network"] == "namespaces" for r in rows):
        notes.append("Emulated hosts: the PS and each worker in a network namespace of its own, cabled by veth pairs "
                     "to a bridge; both ends of every cable shaped with tc tbf at the rate (a full-duplex card per "
                     "host)" + (f"; netem delay {', '.join(delays)} where the flags say so" if delays else "") + ".")
    if any(r["network"] != "namespaces" for r in rows):
        notes.append("**Not shaped**: the rows marked loopback ran over 127.0.0.1 without namespaces (no root, or "
                     "--unshaped-loopback); their rate names the grid point only, and link counters are not measured.")
    return notes



# --- figures -------------------------------------------------------------------------------------

def plot(curves_csv: Path, out_dir: Path, targets: dict[tuple[str, int], tuple[float, str]] | None = None) -> list[Path]:
    """Write network-wN.png for every worker count in `curves_csv`; the paths written.

    The accuracy the grid point's target is reached on (validation, else test) against the PS's wall
    time (top row) and against cumulative accounted bytes, both directions (bottom row, log scale); one
    column per rate, one line per method; the dashed line is the grid point's target accuracy."""
    import matplotlib  # only once there is something to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple[int, str, str], list[dict]] = defaultdict(list)
    for r in read_csv(curves_csv):
        curves[(int(r["workers"]), r["rate"], r["method"])].append(r)
    written = []
    for workers in sorted({w for w, _, _ in curves}):
        rates = sorted({rate for w, rate, _ in curves if w == workers}, key=rate_order)
        fig, axes = plt.subplots(2, len(rates), figsize=(4.6 * len(rates), 7.5), squeeze=False)
        for column, rate in enumerate(rates):
            by_time, by_bytes = axes[0][column], axes[1][column]
            target, on = (targets or {}).get((rate, workers), (None, "test_acc"))
            for method in sorted({m for w, r, m in curves if (w, r) == (workers, rate)}, key=method_order):
                points = sorted((float(c["wall_s"]), float(c[on]), float(c["bytes_cum"]))
                                for c in curves[(workers, rate, method)] if c.get(on) not in ("", None))
                # Every curve starts at its first evaluation: there is no accuracy before epoch 1.
                by_time.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
                by_bytes.plot([p[2] for p in points], [p[1] for p in points], marker="o", label=method)
            for ax in (by_time, by_bytes):
                if target is not None:
                    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
                ax.grid(True, alpha=0.3)
                ax.set_ylabel(f"{ON[on]} accuracy")  # per column: a point without validation figures plots test
            by_time.set_title(f"{rate}, {workers} workers")
            by_time.set_xlabel("PS wall time (s)")
            by_bytes.set_xlabel("bytes accounted, up + down (cumulative)")
            by_bytes.set_xscale("log")
            by_time.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"network-w{workers}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --- the report ----------------------------------------------------------------------------------

def write_results(out: Path, new_rows: list[dict], new_curves: list[dict], margin: float,
                  fixed: float | None) -> list[dict]:
    """Merge this grid's rows and curves into out/*.csv, then rewrite results.md and the plots."""
    rows = merge(read_csv(out / "results.csv"), new_rows, _key)
    curves = merge(read_csv(out / "curves.csv"), new_curves, _key)
    derived = sorted(derive(rows, curves, margin, fixed), key=_sort_key)
    write_csv(out / "results.csv", derived, RESULT_COLUMNS)
    write_csv(out / "curves.csv", curves, CURVE_COLUMNS)
    notes = [*notes_for(derived), target_note(derived, margin, fixed)]
    text = "# Network benchmark\n\n" + "".join(f"{n}\n\n" for n in notes if n)
    text += markdown_table(derived) + "\n" + EXPLANATION
    (out / "results.md").write_text(text)
    plot(out / "curves.csv", out, targets(rows, margin, fixed))
    return derived


def rewrite(out: Path, margin: float, fixed: float | None) -> list[dict]:
    """The report of `out` re-derived from its CSVs alone; ReportError if it has no results.csv."""
    if not (Path(out) / "results.csv").exists():
        raise ReportError(f"no results.csv in {out}; run the grid (benchmarks/network.py) first")
    return write_results(Path(out), [], [], margin, fixed)
