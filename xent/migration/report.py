"""What ``xent migrate`` found: findings (``path:line: rule: note``) and diffs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

#: rule id -> what it is about (README and ``--help`` material; every finding uses one)
RULES = {
    "argument-order": "a positional pre-1.0 (logits, labels) call made explicit",
    "label-gradient": "labels wrapped in tf.stop_gradient to keep TF1's semantics",
    "dim-axis": "`dim=` -> `axis=`",
    "v2-suffix": "`softmax_cross_entropy_with_logits_v2` -> the plain TF2 name",
    "math-log": "`tf.log` -> `tf.math.log`",
    "reduction-indices": "`reduction_indices=` -> `axis=`",
    "keep-dims": "`keep_dims=` -> `keepdims=`",
    "tf-losses": "`tf.losses.*softmax_cross_entropy` -> the mean of the tf.nn function",
    "session": "Session code -> eager code",
    "compat-v1": "a TF1-only name kept runnable as `tf.compat.v1.*`",
    "rename": "a TF1 name -> its TF2 name, the same function (TensorFlow's upgrade tables)",
    "graph-code": "TF1 graph code that cannot become eager code mechanically",
    "to-xent": "a TF call replaced by the xent call",
    "log-softmax": "`log(softmax(x))`: use the fused log_softmax / cross-entropy",
    "manual": "a change the tool cannot make safely: do it by hand",
    "parse-error": "the file cannot be parsed; left untouched",
}


@dataclass(frozen=True, order=True)
class Finding:
    """One report entry, at a line of the original source (of a cell, in notebooks)."""

    line: int
    rule: str
    note: str
    #: "change" (the rewrite does it), "review" (look at it), "lint", "error"
    kind: str = "change"
    #: notebook code cell index (0-based), None for Python files
    cell: int | None = None

    def format(self, path: str) -> str:
        where = path if self.cell is None else f"{path}:cell_{self.cell + 1}"
        return f"{where}:{self.line}: {self.rule}: {self.note}"


def unified_diff(before: str, after: str, label: str) -> str:
    """A unified diff of two texts, line endings shown as ``\\n``."""
    lines = difflib.unified_diff(
        [line.rstrip("\r\n") + "\n" for line in before.splitlines()],
        [line.rstrip("\r\n") + "\n" for line in after.splitlines()],
        fromfile=f"a/{label.lstrip('/')}",
        tofile=f"b/{label.lstrip('/')}",
    )
    return "".join(lines)
