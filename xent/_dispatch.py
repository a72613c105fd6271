"""Which backend runs a call: by the type of ``logits``, never importing a framework.

A value can only belong to a framework whose module is already in ``sys.modules``
(the einops / array-api-compat technique); the answer is cached per ``type``.
Framework-neutral input (NumPy arrays, Python sequences and scalars) runs where
``backend=``, then :func:`use_backend`, then ``XENT_BACKEND`` say, else on NumPy.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from xent import _validate, backends
from xent.backends import Backend

#: type -> owning framework backend, or None for framework-neutral types.
_owner_cache: dict[type, Backend | None] = {
    np.ndarray: None, list: None, tuple: None, float: None, int: None, bool: None,
}
_UNKNOWN = object()
_chosen: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "xent_backend", default=None
)


#: type of logits -> its owner's fast path for calls with no options (``Backend.plain_path``)
plain_paths: dict[type, Any] = {}


def _clear_cache() -> None:
    """Forget framework owners (a newly registered backend may claim their types)."""
    for t in [t for t, b in _owner_cache.items() if b is not None]:
        del _owner_cache[t]
    plain_paths.clear()


backends._on_register.append(_clear_cache)


def _is_neutral_type(t: type) -> bool:
    return issubclass(t, (np.ndarray, np.generic, list, tuple, int, float))


def owner(x: Any, argument: str = "logits") -> Backend | None:
    """The framework backend that owns ``x``, or None for framework-neutral input.
    ``argument`` names ``x`` in the TypeError for a type no backend owns."""
    found = _owner_cache.get(type(x), _UNKNOWN)
    if found is _UNKNOWN:
        found = _owner_cache[type(x)] = _find_owner(x, argument)
    return found  # type: ignore[return-value]


def plain_path(x: Any) -> Any:
    """The fast path of ``x``'s owner for calls with no options (``Backend.plain_path``),
    or None (framework-neutral ``x``, a type no backend owns, a backend without one)."""
    found = plain_paths.get(type(x), _UNKNOWN)
    if found is _UNKNOWN:
        try:
            backend = owner(x)
        except TypeError:  # the general path raises it
            backend = None
        ask = getattr(backend, "plain_path", None)  # a duck-typed backend may not have it
        found = plain_paths[type(x)] = None if ask is None else ask(type(x))
    return found


def _registered_owner(x: Any) -> Backend | None:
    for backend in backends.registered():
        if (backend.module is None or backend.module in sys.modules) and backend.owns(x):
            return backend
    return None


def _find_owner(x: Any, argument: str) -> Backend | None:
    found = _registered_owner(x)
    if found is not None or _is_neutral_type(type(x)):  # never ask a framework about these
        return found
    for framework, name in backends.builtin_candidates():
        if framework in sys.modules:
            backend = backends.get(name)
            if backend.owns(x):
                return backend
    backends.load_entry_points()  # a third-party tensor: its backend may be an entry point
    found = _registered_owner(x)
    if found is not None:
        return found
    raise TypeError(
        f"{argument}: unsupported type {type(x).__module__}.{type(x).__qualname__}; expected a "
        f"NumPy array, a Python sequence, or a tensor of {', '.join(backends.available())}"
    )


_default: list[Backend] = []  # the XENT_BACKEND (else NumPy) backend, looked up once


def chosen_backend(explicit: str | Backend | None) -> Backend:
    """Where framework-neutral input runs: ``backend=``, ``use_backend``, ``XENT_BACKEND``.

    ``XENT_BACKEND`` is read at the first call that needs it (like ``KERAS_BACKEND``);
    :func:`use_backend` is the way to change the choice at run time."""
    if explicit is not None:
        return backends.get(explicit) if isinstance(explicit, str) else explicit
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    if not _default:
        _default.append(backends.get(os.environ.get("XENT_BACKEND") or "numpy"))
    return _default[0]


def neutral_backend() -> Backend:
    """:func:`chosen_backend` when no ``backend=`` is given (every call's hot path)."""
    chosen = _chosen.get()
    if chosen is None:
        chosen = _default[0] if _default else chosen_backend(None)
    return chosen


def forget_environment() -> None:
    """Read ``XENT_BACKEND`` again at the next call (for tests)."""
    _default.clear()


def resolve(logits: Any, labels: Any, explicit: str | Backend | None) -> Backend:
    """The backend for a call, checking that logits, labels and ``backend=`` agree."""
    return pick(owner(logits), None if labels is None else owner(labels), explicit)


def pick(
    logits_owner: Backend | None, labels_owner: Backend | None, explicit: str | Backend | None
) -> Backend:
    """:func:`resolve` given the owners of logits and labels (None: framework-neutral)."""
    if logits_owner is None:
        backend = chosen_backend(explicit)
    else:
        backend = logits_owner
        if explicit is not None and chosen_backend(explicit) is not backend:
            raise TypeError(
                f"backend: {chosen_backend(explicit).name!r} was requested but logits is a "
                f"{backend.name} tensor, which always runs on {backend.name}"
            )
    if labels_owner is not None and foreign(backend, labels_owner):
        raise _validate.mixed_frameworks(backend.name, labels_owner.name)
    return backend


def foreign(backend: Backend, other: Backend) -> bool:
    """Whether tensors of ``other`` cannot go with ``backend``'s logits: another framework's,
    unless ``backend.accepts`` names it (DTensor logits take plain torch tensors of global
    labels and options)."""
    return other is not backend and other.name not in getattr(backend, "accepts", ())


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Run framework-neutral input (NumPy arrays, lists) on ``name`` inside the block.

    Context-local: each thread and asyncio task sees its own choice.

    >>> import xent
    >>> with xent.use_backend("numpy") as backend:
    ...     backend.name
    'numpy'
    """
    backend = backends.get(name) if isinstance(name, str) else name
    token = _chosen.set(backend)
    try:
        yield backend
    finally:
        _chosen.reset(token)
