"""Files for ``xent migrate``: which ones a path names, and atomic rewriting."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUFFIXES = (".py", ".ipynb")
_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages"}


def expand(paths: list[str]) -> Iterator[Path]:
    """The files the command-line paths name: files as given, directories walked (sorted;
    ``*.py`` and ``*.ipynb``; hidden directories, ``__pycache__`` and ``site-packages``
    skipped). Raises FileNotFoundError for a path that does not exist."""
    for name in paths:
        if not os.path.exists(name):
            raise FileNotFoundError(f"{name}: no such file or directory")
    seen: set[Path] = set()
    for name in paths:
        path = Path(name)
        found = [path] if not path.is_dir() else _walk(path)
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs
                            if not d.startswith(".") and d not in _SKIPPED_DIRS)
        found += [Path(directory, f) for f in sorted(files) if f.endswith(SUFFIXES)]
    return found


def write_atomically(path: Path, data: bytes) -> None:
    """Replace the file's content in one step (temporary file + ``os.replace``), keeping
    its permission bits; a symbolic link keeps pointing at the rewritten file."""
    target = Path(os.path.realpath(path))
    mode = stat.S_IMODE(target.stat().st_mode)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".xent-migrate")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
