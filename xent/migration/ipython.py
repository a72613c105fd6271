"""IPython syntax in notebook cells, masked for a Python parser and restored after.

IPython reads a line as its own syntax only where a Python statement starts: line magics
(``%time f()``, ``x = %sx ls``), shell escapes (``!pip ...``, ``files = !ls``) and help
(``f?``, ``??f``), at any indentation. A ``%`` that continues an expression
(``"%d" \\n    % n`` inside brackets) is Python's modulo operator.

A magic that runs a Python statement (``%time``, ``%timeit``, ``%prun`` without options)
is masked as that statement, so that it is migrated like the rest
(``%time v = sess.run(x)`` -> ``%time v = x.numpy()``). Any other magic becomes the
statement ``_xent_magic_N(names...)``, passing every name the magic mentions: the
rewrite sees them used in a way it cannot follow (a session a magic uses is never
removed), and a block whose only statement is a magic stays a block. Both come back with
the indentation they have after the rewrite (a ``with tf.Session():`` block that was
unwrapped takes its magics along).

>>> masked, magics = mask("for i in range(2):\\n    %time f(i)\\n    !echo {i}\\n"
...                       "y = ('%d'\\n     % 3)\\n")
>>> print(masked)
for i in range(2):
    f(i)  # xent-migrate-magic 0
    _xent_magic_1(echo, i)
y = ('%d'
     % 3)
<BLANKLINE>
>>> print(restore(masked.replace("    ", ""), magics).splitlines()[1:3])
['%time f(i)', '!echo {i}']
"""

from __future__ import annotations

import ast
import keyword
import re

_PYTHON_LINE = "{}  # xent-migrate-magic {}"
_OPAQUE = "_xent_magic_{}({})"
_RESTORE = re.compile(r"^([ \t]*)(?:(.*?) *# xent-migrate-magic (\d+)|_xent_magic_(\d+)\(.*\))$",
                      re.MULTILINE)
_MAGIC = re.compile(r"^(?:[%!?]|[\w.]+\s*=\s*[%!]\S|[\w.\[\]()]+\?\??$)")
_STATEMENT_MAGIC = re.compile(r"^%(time|timeit|prun)\s+(?!-)(\S.*)$")
_NAME = re.compile(r"[A-Za-z_]\w*")
#: cell magics whose body is Python (run as Python by IPython)
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "memit", "debug"})


class MagicLost(ValueError):
    """A masked magic is missing from the rewritten code."""


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
            out.append(indent + _placeholder(text.strip(), len(magics)))
            magics.append(text)
            index += 1
            continue
        depth, quote, continued = _scan(line, depth, quote)
        out.append(line)
        index += 1
    return "\n".join(out), magics


def _placeholder(magic: str, index: int) -> str:
    statement = _STATEMENT_MAGIC.match(magic)
    if statement and "#" not in magic and "\n" not in magic:
        try:
            ast.parse(statement.group(2))
            return _PYTHON_LINE.format(statement.group(2), index)
        except SyntaxError:
            pass
    mentioned = dict.fromkeys(n for n in _NAME.findall(magic) if not keyword.iskeyword(n))
    return _OPAQUE.format(index, ", ".join(mentioned))


def restore(code: str, magics: list[str]) -> str:
    """Put the IPython lines back, each at its placeholder's indentation (a magic that
    ran a statement, with the statement as rewritten). Raises :class:`MagicLost` when a
    placeholder is gone."""
    seen: set[int] = set()

    def back(match: re.Match[str]) -> str:
        index = int(match.group(3) or match.group(4))
        seen.add(index)
        original = magics[index]
        if match.group(3) is not None:  # a statement magic: its rewritten statement
            name = _STATEMENT_MAGIC.match(original.strip())
            assert name is not None
            if not match.group(2):
                return ""  # the rewrite removed the statement (``sess.close()``)
            return f"{match.group(1)}%{name.group(1)} {match.group(2)}"
        first, _, rest = original.partition("\n")
        return match.group(1) + first.lstrip() + ("\n" + rest if rest else "")

    restored = _RESTORE.sub(back, code)
    if len(seen) != len(magics):
        raise MagicLost("an IPython line was lost in the rewrite")
    return restored


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
