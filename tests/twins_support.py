"""Helpers for the framework-twin tests (``test_twins_*.py``)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np


def assert_signature(twin: Any, native: Any) -> None:
    """Same parameter names, kinds, order and defaults (annotations aside)."""
    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(fn).parameters.values()]
    assert shape(twin) == shape(native), f"{twin.__qualname__}: {shape(twin)} != {shape(native)}"


def close(actual: Any, expected: Any, eps: float = float(np.finfo(np.float32).eps),
          few: float = 32.0) -> None:
    """``actual`` equals ``expected`` within a few eps times their scale (NaN where NaN),
    with the same shape."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=few * eps * scale)


def as_numpy(x: Any) -> np.ndarray:
    """A framework tensor (or array) as NumPy, detached."""
    if hasattr(x, "detach"):
        x = x.detach()
    return np.asarray(x)
