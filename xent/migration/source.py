"""Migrate Python source given as bytes (encoding, BOM and line endings kept) or text."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from xent.migration.report import Finding
from xent.migration.rewrite import migrate_module

TARGETS = ("tf2", "xent")


class SourceError(Exception):
    """Source that cannot be parsed: where and why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class Migrated:
    """The source before and after, and what was found."""

    before: bytes | str
    after: bytes | str
    findings: list[Finding] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.after != self.before


def parse(code: bytes | str) -> cst.Module:
    """The syntax tree of ``code``, or :class:`SourceError` with the offending line."""
    try:
        return cst.parse_module(code)
    except cst.ParserSyntaxError as error:
        line, message = error.raw_line, error.message.splitlines()[0]
        try:  # Python's own parser points at the offending line more precisely
            compile(code, "<source>", "exec", dont_inherit=True)
        except SyntaxError as python_error:
            line, message = python_error.lineno or line, python_error.msg
        except (ValueError, UnicodeDecodeError):
            pass
        raise SourceError(line, message) from None
    except UnicodeDecodeError as error:
        assert isinstance(code, bytes)
        line = code[: error.start].count(b"\n") + 1
        raise SourceError(line, f"cannot decode as {error.encoding}: {error.reason}") from None
    except (SyntaxError, LookupError, ValueError) as error:  # bad coding cookie, NUL bytes
        line = getattr(error, "lineno", None) or 1
        raise SourceError(
            line, str(error).splitlines()[0] if str(error) else "cannot parse"
        ) from error


def migrate_source(code: bytes | str, target: str = "tf2") -> Migrated:
    """Rewrite TF1 ``code`` for ``target`` ("tf2" or "xent").

    Bytes in, bytes out (the file's encoding, BOM and line endings kept); text in, text out.
    Code with nothing to migrate comes back identical.

    >>> migrate_source("import tensorflow as tf\\ny = tf.log(x)\\n").after
    'import tensorflow as tf\\ny = tf.math.log(x)\\n'
    """
    if target not in TARGETS:
        raise ValueError(f"--to: expected tf2 or xent, got {target!r}")
    module = parse(code)
    raw = code if isinstance(code, bytes) else code.encode("utf-8", "replace")
    # the rules start from a tensorflow import, the lint from a softmax or an exp
    new, findings = migrate_module(module, target, rewrite=b"tensorflow" in raw,
                                   check=b"softmax" in raw or b"exp" in raw)
    after: bytes | str = new.bytes if isinstance(code, bytes) else new.code
    if after == code or new.code == module.code:
        after = code
    return Migrated(code, after, findings)
