"""``jax.nn`` twins (``softmax``, ``log_softmax``): JAX's signatures and meaning, on every
backend.

``where`` excludes classes: softmax is 0 there and log_softmax ``-inf``; a row with no class
left is 0 (softmax) and ``-inf`` (log_softmax), as in JAX (the core gives NaN there).

>>> from xent.compat.jax import nn
>>> print(nn.softmax([[1.0, 2.0, 3.0]], where=[[True, False, True]]).round(6))
[[0.119203 0.       0.880797]]
"""

from __future__ import annotations

from typing import Any

import xent
from xent.compat import _compose

__all__ = ["log_softmax", "softmax"]


def softmax(x: Any, axis: Any = -1, where: Any = None) -> Any:
    """``jax.nn.softmax``: ``exp(x - logsumexp(x))`` along ``axis``, over the classes
    ``where`` keeps (0 elsewhere)."""
    axis = _compose.class_axis(axis, "softmax")
    if where is None:
        return xent.softmax(x, axis)
    be = _compose.backend_of(x)
    x = _compose.native(be, x)
    mask = _compose.native(be, where, like=x)
    return be.where(mask, xent.softmax(x, axis, where=mask), 0.0)  # an empty row: 0


def log_softmax(x: Any, axis: Any = -1, where: Any = None) -> Any:
    """``jax.nn.log_softmax``: ``x - logsumexp(x)`` along ``axis``, over the classes
    ``where`` keeps (``-inf`` elsewhere)."""
    axis = _compose.class_axis(axis, "log_softmax")
    if where is None:
        return xent.log_softmax(x, axis)
    be = _compose.backend_of(x)
    x = _compose.native(be, x)
    mask = _compose.native(be, where, like=x)
    return be.where(mask, xent.log_softmax(x, axis, where=mask), -float("inf"))
