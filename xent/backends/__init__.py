"""The backend registry: built-in backends, registered ones and entry points.

Built-in backends are imported on first use, never by ``import xent``:
``numpy`` (the reference, always present), ``torch``, ``tensorflow``, ``jax``, ``dask`` and
``dtensor`` (torch's ``DTensor``, gated on ``torch.distributed.tensor``: a DTensor exists only
once that module is imported).
Third-party packages add backends with :func:`register` or through the
``xent.backends`` entry-point group (each entry point names a backend object, or a
zero-argument callable returning one).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from typing import Any

from xent.backends._base import Backend

__all__ = ["Backend", "available", "get", "register"]

ENTRY_POINT_GROUP = "xent.backends"

#: name -> (framework module, backend module, class name)
_BUILTIN: dict[str, tuple[str, str, str]] = {
    "numpy": ("numpy", "xent.backends._numpy", "NumpyBackend"),
    "torch": ("torch", "xent.backends._torch", "TorchBackend"),
    "tensorflow": ("tensorflow", "xent.backends._tensorflow", "TensorFlowBackend"),
    "jax": ("jax", "xent.backends._jax", "JaxBackend"),
    "dask": ("dask", "xent.backends._dask", "DaskBackend"),
    "dtensor": ("torch.distributed.tensor", "xent.backends._torch_dtensor", "DTensorBackend"),
}
_ALIASES = {"tf": "tensorflow", "np": "numpy", "pytorch": "torch"}

_loaded: dict[str, Backend] = {}
_entry_points_loaded = False
_on_register: list[Any] = []  # callbacks (the dispatch cache) run when the set changes


def register(backend: Backend) -> Backend:
    """Make ``backend`` available by name and to dispatch, and return it. Registering a
    name again replaces the backend."""
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"backend: expected an object with a non-empty str `name`, got {backend!r}")
    missing = [
        m
        for m in ("owns", "softmax", "log_softmax", "softmax_cross_entropy_with_logits",
                  "sparse_softmax_cross_entropy_with_logits")
        if not callable(getattr(backend, m, None))
    ]
    if missing:
        raise TypeError(f"backend: {name!r} lacks the method(s) {', '.join(missing)}")
    _loaded[name] = backend
    for callback in _on_register:
        callback()
    return backend


def get(name: str) -> Backend:
    """The backend called ``name`` (importing its framework if needed).

    Raises ValueError for an unknown name and ImportError when the framework of a
    built-in backend is not installed."""
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a backend name (str), got {type(name).__name__}")
    name = _ALIASES.get(name, name)
    backend = _loaded.get(name)
    if backend is not None:
        return backend
    if name in _BUILTIN:
        framework, module, cls = _BUILTIN[name]
        if framework not in sys.modules and not _installed(framework):
            top = framework.partition(".")[0]
            raise ImportError(
                f"backend: {name!r} needs {top}, which is not installed "
                f"(pip install 'xent[{top}]')"
            )
        backend = getattr(_import(module), cls)()
        _loaded[name] = backend
        return backend
    load_entry_points()
    if name in _loaded:
        return _loaded[name]
    raise ValueError(f"backend: unknown backend {name!r}; available: {', '.join(available())}")


def _import(module: str) -> Any:
    """``importlib.import_module(module)``. torch's backend (and DTensor's) is imported by an
    import statement: ``torch.compile`` runs those while it traces (an importlib call breaks
    its graph), so the first xent call of a process may be inside a compiled function."""
    if module == "xent.backends._torch":
        from xent.backends import _torch

        return _torch
    if module == "xent.backends._torch_dtensor":  # torch.compile imports DTensor itself
        from xent.backends import _torch_dtensor

        return _torch_dtensor
    return importlib.import_module(module)


def available() -> list[str]:
    """Names of the backends that can run here: built-ins whose framework is installed,
    registered backends and entry points. Imports no framework."""
    names = [n for n, (fw, _, _) in _BUILTIN.items() if n in _loaded or _installed(fw)]
    names += [n for n in _loaded if n not in names]
    names += [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in names]
    return names


def builtin_candidates() -> list[tuple[str, str]]:
    """(framework module, backend name) of the built-in framework backends; a submodule's
    backend first (a DTensor is a torch.Tensor, but the dtensor backend owns it)."""
    found = [(fw, name) for name, (fw, _, _) in _BUILTIN.items() if name != "numpy"]
    return sorted(found, key=lambda pair: -pair[0].count("."))


def registered() -> list[Backend]:
    """Backends registered by name that are not built in."""
    return [b for n, b in _loaded.items() if n not in _BUILTIN]


def _installed(module: str) -> bool:
    """Whether ``module``'s top-level package is installed (finding a submodule's spec
    would import its parents)."""
    try:
        return importlib.util.find_spec(module.partition(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded:
            continue
        obj = ep.load()
        register(obj() if isinstance(obj, type) or not hasattr(obj, "owns") else obj)

