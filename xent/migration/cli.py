"""``xent map`` and ``xent migrate``: printing and exit statuses only.

``xent migrate`` prints a unified diff on stdout and the report (``path:line: rule: note``)
on stderr; it writes nothing unless ``--write``. Exit status: 0, or 1 with ``--check`` when
a file would change (or did, with ``--write``), or 2 when a file cannot be parsed (that
file is reported and left untouched; the others are still migrated).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xent.migration import mapping
from xent.migration.files import expand, write_atomically
from xent.migration.report import Finding, unified_diff


def main(args: argparse.Namespace) -> int:
    if args.command == "map":
        sys.stdout.write(mapping.render(args.format))
        return 0
    return migrate(args.paths, target=args.to, write=args.write, check=args.check)


def migrate(paths: list[str], target: str = "tf2", write: bool = False,
            check: bool = False) -> int:
    """Migrate ``paths``; print the diff (unless ``write``) and the report."""
    from xent.cli import UsageError

    try:
        from xent.migration.source import SourceError
    except ImportError as error:
        raise UsageError(f"needs libcst, which is not installed (pip install "
                         f"'xent[migrate]'): {error}") from None
    try:
        files = list(expand(paths))
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    changed = errors = 0
    for path in files:
        label = path.as_posix()
        try:
            before = path.read_bytes()
            after, findings, diff = _migrate_file(path, before, target, label)
        except SourceError as error:
            errors += 1
            cell = getattr(error, "cell", None)
            print(Finding(error.line, "parse-error", f"cannot parse, left untouched: "
                          f"{error.message}", "error", cell).format(label), file=sys.stderr)
            continue
        except OSError as error:
            errors += 1
            print(f"{label}:1: parse-error: cannot read: {error.strerror or error}",
                  file=sys.stderr)
            continue
        for finding in findings:
            print(finding.format(label), file=sys.stderr)
        if after == before:
            continue
        changed += 1
        if write:
            write_atomically(path, after)
        else:
            sys.stdout.write(diff)
    from xent.migration.upgrade_tables import load

    if load().note:  # the long tail of TF1 names needs TensorFlow's tables
        print(f"xent migrate: note: {load().note}", file=sys.stderr)
    verb = "rewrote" if write else "would rewrite"
    summary = f"xent migrate: {verb} {changed} of {len(files)} file(s)"
    if errors:
        summary += f"; {errors} could not be parsed"
    print(summary, file=sys.stderr)
    if errors:
        return 2
    return 1 if check and changed else 0


def _migrate_file(path: Path, before: bytes, target: str,
                  label: str) -> tuple[bytes, list[Finding], str]:
    from xent.migration.source import migrate_source

    if path.suffix == ".ipynb":
        from xent.migration.notebooks import migrate_notebook

        return migrate_notebook(before, target, label)
    result = migrate_source(before, target)
    after = result.after
    assert isinstance(after, bytes)
    diff = ""
    if result.changed:
        encoding = _encoding(before)
        diff = unified_diff(before.decode(encoding), after.decode(encoding), label)
    return after, result.findings, diff


def _encoding(data: bytes) -> str:
    import io
    import tokenize

    try:
        return tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError:
        return "utf-8"
