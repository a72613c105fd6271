"""IPython syntax in notebook cells, masked for a Python parser and restored after.

IPython reads a line as its own syntax only where a Python statement starts: line magics
(``%time f()``, ``x = %sx ls``), shell escapes (``!pip ...``, ``files = !ls``) and help
(``f?``, ``??f``), at any indentation. A ``%`` that continues an expression
(``"%d" \\n    % n`` inside brackets) is Python's modulo operator. Each magic line becomes
``pass  # xent-migrate-magic N`` (a statement: a block whose only statement is a magic
stays a block) and comes back with the indentation its placeholder has after the rewrite
(a ``with tf.Session():`` block that was unwrapped takes its magics along).

>>> masked, magics = mask("for i in range(2):\\n    %time f(i)\\ny = ('%d'\\n     % 3)\\n")
>>> print(masked)
for i in range(2):
    pass  # xent-migrate-magic 0
y = ('%d'
     % 3)
<BLANKLINE>
>>> restore(masked.replace("    pass", "pass"), magics).splitlines()[1]
'%time f(i)'
"""

from __future__ import annotations

import re

PLACEHOLDER = "pass  # xent-migrate-magic {}"
_PLACEHOLDER = re.compile(r"^([ \t]*)pass  # xent-migrate-magic (\d+)$", re.MULTILINE)
_MAGIC = re.compile(r"^(?:[%!?]|[\w.]+\s*=\s*[%!]\S|[\w.\[\]()]+\?\??$)")
#: cell magics whose body is Python (run as Python by IPython)
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "memit", "debug"})


def cell_magic(code: str) -> str | None:
    """The name of the cell magic on a cell's first line (``%%time`` -> ``time``)."""
    first = code.lstrip().split("\n", 1)[0]
    if not first.startswith("%%"):
        return None
    return first[2:].split(None, 1)[0] if first[2:].strip() else ""


def mask(code: str, magics: list[str] | None = None) -> tuple[str, list[str]]:
    """``code`` with every IPython line replaced by a placeholder statement, and the
    lines replaced (appended to ``magics``; a placeholder holds its index)."""
    magics = [] if magics is None else magics
    out: list[str] = []
    depth, quote, continued = 0, "", False
    lines = code.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        starts = depth == 0 and not quote and not continued
        stripped = line.strip()
        if starts and stripped and _MAGIC.match(_code_part(stripped)):
            text = line
            while text.rstrip().endswith("\\") and index + 1 < len(lines):
                index += 1
                text += "\n" + lines[index]
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + PLACEHOLDER.format(len(magics)))
            magics.append(text)
            index += 1
            continue
        depth, quote, continued = _scan(line, depth, quote)
        out.append(line)
        index += 1
    return "\n".join(out), magics


def restore(code: str, magics: list[str]) -> str:
    """Put the IPython lines back, each at its placeholder's indentation."""
    def back(match: re.Match[str]) -> str:
        original = magics[int(match.group(2))]
        first, _, rest = original.partition("\n")
        return match.group(1) + first.lstrip() + ("\n" + rest if rest else "")

    return _PLACEHOLDER.sub(back, code)


def _code_part(stripped: str) -> str:
    """A magic candidate without a trailing comment (``x = 1  # why?`` is Python)."""
    if stripped.startswith(("%", "!")):
        return stripped
    quote = ""
    for position, char in enumerate(stripped):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#":
            return stripped[:position].rstrip()
    return stripped


def _scan(line: str, depth: int, quote: str) -> tuple[int, str, bool]:
    """Bracket depth and open string after ``line``; whether it ends with ``\\``."""
    position = 0
    while position < len(line):
        char = line[position]
        if quote:
            if char == "\\":
                position += 2
                continue
            if line.startswith(quote, position):
                position += len(quote)
                quote = ""
                continue
            position += 1
            continue
        if char == "#":
            return depth, quote, False
        if char in "'\"":
            triple = line[position: position + 3]
            quote = triple if triple in ("'''", '"""') else char
            position += len(quote)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        position += 1
    if quote in ("'", '"'):
        quote = ""  # an unterminated one-line string: a syntax error Python reports
    return depth, quote, line.rstrip().endswith("\\")
