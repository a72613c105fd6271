"""Jupyter notebooks: their code cells migrated as one program, everything else untouched.

Cells share one namespace (``sess = tf.Session()`` in one cell, ``sess.run`` in the next),
so the code cells are joined into one module, each after a marker comment, migrated, and
split again. IPython syntax (``%magic``, ``!shell``, ``x?``, at any indentation) is masked
for the parser and restored after (:mod:`xent.migration.ipython`); cells under a cell
magic whose body is Python (``%%time``...) are migrated, other cell magics (``%%bash``)
are left alone. Findings carry their cell.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xent.migration.ipython import PYTHON_CELL_MAGICS, MagicLost, cell_magic, mask, restore
from xent.migration.report import Finding, unified_diff
from xent.migration.source import Migrated, SourceError, migrate_source

_CELL = "# xent-migrate-cell {}"
_CELL_RE = re.compile(r"^# xent-migrate-cell (\d+)\r?\n?", re.MULTILINE)


class NotebookError(SourceError):
    """A notebook that cannot be read or parsed, with the cell when known."""

    def __init__(self, line: int, message: str, cell: int | None = None) -> None:
        super().__init__(line, message)
        self.cell = cell


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def migrate_notebook(data: bytes, target: str, label: str) -> tuple[bytes, list[Finding], str]:
    """(new notebook bytes, findings, diff of the changed cells)."""
    try:
        text = data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8")
        notebook = json.loads(text)
        cells = notebook["cells"]
    except UnicodeDecodeError as error:
        raise NotebookError(data[: error.start].count(b"\n") + 1, "not UTF-8") from None
    except json.JSONDecodeError as error:
        raise NotebookError(error.lineno, f"not JSON: {error.msg}") from None
    except (KeyError, TypeError):
        raise NotebookError(1, "not a notebook (no cells)") from None
    chosen = [i for i, cell in enumerate(cells) if cell.get("cell_type") == "code"
              and cell_magic(_source(cell)) in (None, *PYTHON_CELL_MAGICS)]
    magics: list[str] = []
    parts: list[str] = []
    starts: dict[int, int] = {}  # line of each cell's marker in the joined program
    line = 1
    for index in chosen:
        body, _ = mask(_source(cells[index]), magics)
        if not body.endswith("\n"):
            body += "\n"
        starts[index] = line
        parts.append(_CELL.format(index) + "\n" + body)
        line += 1 + body.count("\n")
    program = "".join(parts)
    try:
        result = migrate_source(program, target)
    except SourceError as error:
        cell, cell_line = _locate(starts, error.line)
        raise NotebookError(cell_line, error.message, cell) from None
    findings = [_in_cell(f, starts) for f in result.findings]
    if not result.changed:
        return data, findings, ""
    try:
        mapped = set(_split(result, magics)) == set(chosen)
    except MagicLost:
        mapped = False
    if not mapped:
        raise NotebookError(1, "the migrated code no longer maps onto the cells; "
                               "migrate this notebook by hand")
    diff = _diffs(cells, result, magics, label)
    return _rebuilt(data, text, notebook, result, magics), findings, diff


def _split(result: Migrated, magics: list[str]) -> dict[int, str]:
    after = restore(str(result.after), magics)
    pieces = _CELL_RE.split(after)
    cells = {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}
    if pieces[0] and cells:  # a statement inserted before the first cell's marker
        first = min(cells)
        cells[first] = pieces[0] + cells[first]
    return cells


def _cell_text(old: str, new: str) -> str:
    return new if old.endswith("\n") or not new.endswith("\n") else new[:-1]


def _rebuilt(data: bytes, text: str, notebook: dict[str, Any], result: Migrated,
             magics: list[str]) -> bytes:
    new_sources = _split(result, magics)
    for index, new in new_sources.items():
        cell = notebook["cells"][index]
        old = _source(cell)
        new = _cell_text(old, new)
        if new != old:
            source = cell.get("source", "")
            cell["source"] = new.splitlines(keepends=True) if isinstance(source, list) else new
    indent_match = re.search(r"\n([ \t]+)\S", text)
    indent: int | str | None = None
    if indent_match:
        whitespace = indent_match.group(1)
        indent = len(whitespace) if set(whitespace) == {" "} else whitespace
    out = json.dumps(notebook, indent=indent, ensure_ascii=not _has_non_ascii(text))
    if text.endswith("\n"):
        out += "\n"
    prefix = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    return prefix + out.encode("utf-8")


def _has_non_ascii(text: str) -> bool:
    return any(ord(ch) > 127 for ch in text)


def _diffs(cells: list[dict[str, Any]], result: Migrated, magics: list[str], label: str) -> str:
    out = []
    for index, new in _split(result, magics).items():
        old = _source(cells[index])
        new = _cell_text(old, new)
        if new != old:
            out.append(unified_diff(old, new, f"{label}:cell_{index + 1}"))
    return "".join(out)


def _locate(starts: dict[int, int], line: int) -> tuple[int | None, int]:
    """(cell, line in the cell) of a line of the joined program."""
    best = None
    for cell, start in starts.items():
        if start <= line and (best is None or start > starts[best]):
            best = cell
    return (best, line - starts[best]) if best is not None else (None, line)


def _in_cell(finding: Finding, starts: dict[int, int]) -> Finding:
    cell, line = _locate(starts, finding.line)
    return Finding(max(line, 1), finding.rule, finding.note, finding.kind, cell)
