"""The whole cost of a way to a trained model: every run it took (bytes up + down, the PS's wall time)
plus the predictor training between them, part by part, so a saving that is not one shows.

A cost is {"parts": [...], "bytes": B, "wall_seconds": S, "complete": bool}; a part is
{"part": what, "bytes": B or None, "wall_seconds": S or None}, None where it was not measured. The
totals add the parts that were; an incomplete cost is a lower bound and is printed as one.
"""
from __future__ import annotations

from reports import accuracy


def part(what: str, bytes_: int | None, wall_seconds: float | None) -> dict:
    return {"part": what, "bytes": bytes_, "wall_seconds": wall_seconds}


def run_part(what: str, summary: dict) -> dict:
    """One run of mp2_local.py / mp2_ps.py: every step's bytes both ways, and the PS's wall time (which
    includes any predictor training the PS did during the run, as online MP² does)."""
    return part(what, summary["bytes_pushed_total"] + summary["bytes_pulled_total"], summary["wall_seconds"])


def predictor_training_seconds(report: dict) -> float:
    """The training time a predictor's report.json (mp2_train_stage.py) records: its epochs' seconds,
    the untrained predictor's evaluation included (process start-up and data loading are not)."""
    return float(sum(row["seconds"] for row in report["rows"]))


def total(parts: list[dict]) -> dict:
    """The parts and their sums; `complete` is False when a part's bytes or time were not measured."""
    known = lambda key: [p[key] for p in parts if p[key] is not None]  # noqa: E731
    return {"parts": parts, "bytes": sum(known("bytes")), "wall_seconds": float(sum(known("wall_seconds"))),
            "complete": all(p["bytes"] is not None and p["wall_seconds"] is not None for p in parts)}


def pipeline_routes(summaries: dict[str, dict], predictor_seconds: float | None, predictor_trained_here: bool,
                    localsgd_label: str = "local SGD") -> list[dict]:
    """The routes mp2_pipeline.py compares by whole cost: the baseline alone, local SGD alone (when run)
    and MP², which took the collection run (the baseline run, snapshotting), the predictor training and
    the MP² run. A predictor reused from an earlier run was paid for there: that collection run is not
    measured here, and the route says so."""
    base, mp2 = summaries["baseline"], summaries["mp2"]
    routes = [{"route": "baseline alone", **total([run_part("baseline run", base)]), **accuracy.fields(base)}]
    if "localsgd" in summaries:
        routes.append({"route": f"{localsgd_label} alone", **total([run_part(f"{localsgd_label} run", summaries["localsgd"])]),
                       **accuracy.fields(summaries["localsgd"])})
    if predictor_trained_here:
        collection = run_part("collection run (the baseline above, snapshotting)", base)
        training = part("predictor training", 0, predictor_seconds)
    else:
        collection = part("collection run of the reused predictor (earlier; not measured here)", None, None)
        training = part("predictor training (earlier" + (", from its report.json)" if predictor_seconds is not None
                                                         else "; not measured here)"), 0, predictor_seconds)
    routes.append({"route": "MP² (whole pipeline)", **total([collection, training, run_part("MP² run", mp2)]),
                   **accuracy.fields(mp2)})
    return routes


def _mb(value: float) -> str:
    return f"{value / 1e6:.1f}"


def markdown(routes: list[dict], title: str = "Whole cost") -> str:
    """A table of the routes against the first one (the baseline alone), then each route's parts."""
    ref = routes[0]
    lines = [f"## {title}", "",
             f"| route | {accuracy.HEADER} | bytes up + down (MB) | vs baseline | wall (s) | vs baseline | counted |",
             "|---|---|---|---|---|---|---|"]
    for r in routes:
        bound = "" if r["complete"] else "≥ "
        counted = " + ".join(p["part"] for p in r["parts"])
        lines.append(f"| {r['route']} | {r['test_acc']:.4f}{accuracy.mark(r['test_acc_kind'])} | {bound}{_mb(r['bytes'])} | "
                     f"{bound}{r['bytes'] / ref['bytes']:.2%} | {bound}{r['wall_seconds']:.1f} | "
                     f"{bound}{r['wall_seconds'] / ref['wall_seconds']:.2%} | {counted} |")
    lines.append("")
    for r in routes:
        if len(r["parts"]) > 1:
            parts = "; ".join(f"{p['part']}: " + ("not measured" if p["bytes"] is None else
                                                 "no traffic" if p["bytes"] == 0 else f"{_mb(p['bytes'])} MB")
                              + ("" if p["wall_seconds"] is None else f", {p['wall_seconds']:.1f} s") for p in r["parts"])
            lines.append(f"- {r['route']}: {parts}" + ("" if r["complete"] else " (a lower bound: a part was not measured)"))
    lines.append(WALL_TIMES)
    if note := accuracy.footnote(r["test_acc_kind"] for r in routes):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


WALL_TIMES = ("- A run's wall time is its PS's wall_seconds (from every worker joining to the end; predictor training the "
              "PS does during the run included); a predictor training's is what was measured: the pipeline's stage "
              "process as a whole, or a report.json's epochs.")
