"""Framework imports without their C++ start-up lines on stderr (for the ``xent`` command).

TensorFlow 2.21 logs through absl before its own log level is read, so ``TF_CPP_MIN_LOG_LEVEL``
no longer silences its import ("All log messages before absl::InitializeLog() ...", the oneDNN
and CPU-feature lines, depending on the CPU). :func:`quiet_imports` installs an import hook
that runs the import of the named top-level packages with file descriptor 2 pointed at a
temporary file; if the import fails, what it wrote is replayed on stderr, so nothing that
explains a failure is lost. Only the import is silenced: later warnings and errors show.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType


def quiet_imports(packages: Sequence[str]) -> None:
    """Silence the C-level stderr of the first import of each of ``packages`` (top-level
    names, e.g. ``"tensorflow"``) in this process."""
    pending = {name for name in packages if name not in sys.modules}
    if pending and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder(pending))


class _QuietFinder(importlib.abc.MetaPathFinder):
    def __init__(self, packages: set[str]) -> None:
        self._packages = packages

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._packages:  # (a find_spec without an import asks here too)
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.abc.Loader):
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = self._loader  # type: ignore[union-attr]  # reloads: unwrapped
        with _stderr_fd_captured():
            self._loader.exec_module(module)


@contextlib.contextmanager
def _stderr_fd_captured() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
