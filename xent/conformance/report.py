"""Present conformance records: the terminal matrix, the progress bar and the JSON file.

JSON schema (``xent conformance --json PATH``)::

    {
      "schema": "xent-conformance/1",
      "xent": "0.1.0",            # version
      "digits": 50,               # precision of the exact reference
      "passed": true,             # every record passed (n/a records do not count)
      "tolerances": {"softmax": 8.0, ..., "relative": 32.0},
      "targets": [{"backend": "jax", "mode": "jit", "dtypes": [...], "tracing": true,
                   "autodiff": true}, ...],
      "records": [
        {"backend": "jax", "mode": "jit", "case": "masked", "dtype": "float32",
         "quantity": "loss",      # softmax log_softmax loss sparse_loss dlogits dlabels
                                  # sparse_dlogits v1_dlogits v1_dlabels out_of_range
         "against": "exact",      # or "<backend>/<mode>" for pairwise agreement
         "metric": "eps*scale",   # or "eps*|exact|" (relative), "zero", "raises"
         "error": 0.7,            # worst elementwise error in units of metric; null when
                                  # not measured (n/a) or unbounded (see detail)
         "tolerance": 8.0,
         "passed": true,          # null for n/a
         "status": "pass",        # "pass" | "fail" | "n/a"
         "detail": ""},           # why it failed / is n/a, or where the worst error is
        ...
      ]
    }
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

import numpy as np

from xent.conformance import metric
from xent.conformance.runner import Record, unexplained


def cell(records: Iterable[Record]) -> str:
    """``FAIL``, ``n/a``, or the worst error as a fraction of its tolerance (at most 1)."""
    worst, measured = 0.0, False
    for r in records:
        if r.passed is False:
            return "FAIL"
        if r.passed:
            measured = True
            worst = max(worst, r.fraction or 0.0)
    if not measured:
        return "n/a"
    return "0" if worst == 0 else f"{worst:.2f}" if worst >= 0.01 else "<.01"


def matrix(records: Sequence[Record], targets: Sequence[tuple[str, str]],
           case_names: Sequence[str]) -> str:
    """One row per case, one column per backend/mode (against the exact reference)."""
    by_cell: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.against == "exact":
            by_cell.setdefault((r.case, r.backend, r.mode), []).append(r)
    rows = [[name] + [cell(by_cell.get((name, b, m), [])) for b, m in targets]
            for name in case_names]
    backends_row = ["case"] + [b if i == 0 or targets[i - 1][0] != b else ""
                               for i, (b, _) in enumerate(targets)]
    modes_row = [""] + [m for _, m in targets]
    return _table([backends_row, modes_row], rows)


def pairwise_matrix(records: Sequence[Record], targets: Sequence[tuple[str, str]]) -> str:
    """Worst disagreement of each pair of targets over every case, dtype and quantity
    (columns numbered like the rows)."""
    names = [f"{b}/{m}" for b, m in targets]
    by_pair: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.against != "exact":
            by_pair.setdefault((r.target, r.against), []).append(r)
            by_pair.setdefault((r.against, r.target), []).append(r)
    rows = [[f"[{i}] {a}"] + [("-" if a == b else cell(by_pair.get((a, b), []))) for b in names]
            for i, a in enumerate(names, 1)]
    return _table([[""] + [f"[{i}]" for i in range(1, len(names) + 1)]], rows)


def _table(header: list[list[str]], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in header + rows) for i in range(len(header[0]))]
    lines = []
    for row in header + [["-" * w for w in widths]] + rows:
        first, *rest = row
        lines.append("  ".join([first.ljust(widths[0])]
                               + [c.rjust(w) for c, w in zip(rest, widths[1:])]).rstrip())
    return "\n".join(lines)


def failures(records: Sequence[Record], limit: int = 40) -> str:
    """One line per failed check against the exact reference (at most ``limit``), then the
    pairwise disagreements that those failures do not already explain."""
    failed = [r for r in records if r.passed is False and r.against == "exact"]
    lines = [_line(r) for r in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"... and {len(failed) - limit} more (see --json)")
    pairs = [r for r in records if r.passed is False and r.against != "exact"]
    new = unexplained(records)
    lines += [_line(r) for r in new[:limit]]
    if len(pairs) > len(new):
        lines.append(f"({len(pairs) - len(new)} pairwise disagreements follow from the "
                     "failures above)")
    return "\n".join(lines)


def _line(r: Record) -> str:
    vs = "" if r.against == "exact" else f" vs {r.against}"
    size = ("" if r.error is None or not np.isfinite(r.error) or r.tolerance is None
            or r.metric in ("zero", "raises")
            else f"error {r.error:.3g} > {r.tolerance:g} {r.metric}; ")
    return f"FAIL {r.target}{vs} {r.case} {r.dtype} {r.quantity}: {size}{r.detail}"


def not_measured(records: Sequence[Record]) -> str:
    """What was n/a and why, one line per reason (the matrix cells hide it)."""
    reasons: dict[str, list[str]] = {}
    for r in records:
        if r.passed is None and r.target not in reasons.setdefault(r.detail, []):
            reasons[r.detail].append(r.target)
    return "\n".join(f"n/a: {why} ({', '.join(targets)})" for why, targets in reasons.items())


def summary(records: Sequence[Record]) -> str:
    counts = {"pass": 0, "fail": 0, "n/a": 0}
    for r in records:
        counts[r.status] += 1
    return (f"{len(records)} checks: {counts['pass']} passed, {counts['fail']} failed, "
            f"{counts['n/a']} n/a")


LEGEND = (
    "Each cell: the worst error over dtypes and quantities as a fraction of its tolerance "
    "(at most 1 passes;\nerrors in units of eps(dtype) * scale, see `xent.conformance.metric`), "
    "FAIL, or n/a (nothing measured)."
)


def write_json(path: str, records: Sequence[Record], targets: Sequence[dict[str, Any]]) -> None:
    from xent import __version__
    from xent.conformance.reference import DIGITS

    document = {
        "schema": "xent-conformance/1",
        "xent": __version__,
        "digits": DIGITS,
        "passed": not any(r.passed is False for r in records),
        "tolerances": {**metric.TOLERANCE, "relative": metric.RELATIVE_TOLERANCE},
        "targets": list(targets),
        "records": [r.as_json() for r in records],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, allow_nan=False)
        f.write("\n")


class Progress:
    """A one-line progress bar on ``stream``, drawn only when it is a terminal."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.done = max(total, 1), 0
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label}"[:100].ljust(100))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
