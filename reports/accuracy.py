"""The test accuracy a report shows and ranks a run by: never the best test epoch (`best_test_acc`,
the maximum over epochs of the test accuracy), which chooses the epoch on the test set and flatters
every run, the noisiest most. A record with a validation split gives the test accuracy at its best
validation epoch (`test_acc_at_best_val`); one without (made before the split) its final epoch's.

Tables show the figure with `cell` (or `mark`) under `HEADER`; `with_footnote` ends a table with
`FOOTNOTE` when a figure in it is a final epoch's."""
from __future__ import annotations

from typing import Iterable, Mapping

from reports.errors import ReportError

AT_BEST_VAL, FINAL = "at best val", "final"
HEADER = "test acc (at best val / final†)"
FOOTNOTE = ("† final epoch: the record has no validation figures (made before the validation split), so its "
            "figure is the test accuracy of its last epoch.")


def _figure(value) -> float | None:
    """A recorded figure, or None where it is absent (a JSON null, or an empty CSV cell)."""
    return None if value in (None, "") else float(value)


def honest_accuracy(summary: Mapping) -> tuple[float, str]:
    """(test accuracy, AT_BEST_VAL or FINAL) of a run's summary.json (or a row that copies its fields)."""
    at_val = _figure(summary.get("test_acc_at_best_val"))
    if at_val is not None:
        return at_val, AT_BEST_VAL
    final = _figure(summary.get("final_test_acc"))
    if final is None:
        curve = summary.get("test_acc_by_epoch") or []
        if not curve:
            raise ReportError("a record has neither test_acc_at_best_val, final_test_acc nor test_acc_by_epoch")
        final = float(curve[-1])
    return final, FINAL


def fields(summary: Mapping, prefix: str = "") -> dict:
    """{PREFIXtest_acc, PREFIXtest_acc_kind} of `summary`, for a report's rows and JSON."""
    value, kind = honest_accuracy(summary)
    return {f"{prefix}test_acc": value, f"{prefix}test_acc_kind": kind}


def mark(kinds: str | Iterable[str]) -> str:
    """The mark (†) of a figure that is a final epoch's, or of a mean with one; empty otherwise."""
    return "†" if FINAL in ([kinds] if isinstance(kinds, str) else list(kinds)) else ""


def cell(summary: Mapping) -> str:
    """The figure as a table cell: four decimals, marked when it is a final epoch's."""
    value, kind = honest_accuracy(summary)
    return f"{value:.4f}{mark(kind)}"


def footnote(kinds: Iterable[str]) -> str:
    """FOOTNOTE if any of a table's figures (by their kinds) is a final epoch's, else ""."""
    return FOOTNOTE if mark(kinds) else ""


def with_footnote(lines: list[str], kinds: Iterable[str]) -> str:
    """A table's lines as Markdown, then FOOTNOTE after a blank line if any of its figures is a final epoch's."""
    note = footnote(kinds)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")
