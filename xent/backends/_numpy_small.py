"""Tiny inputs (a few dozen elements) in plain Python floats.

Below ~64 elements a NumPy call costs more than the arithmetic, so the same formulas as
``_numpy_kernels`` run here on Python floats (float64, hence at least as accurate for
float32 input): ``logsumexp(x) - x_c = (m - x_c) + log1p(sum_{c != k} exp(x_c - m))``.
A row with a NaN or +inf logit, or with every logit -inf, has no defined value (NaN).
The tests check that both paths agree.
"""

from __future__ import annotations

from collections.abc import Callable
from math import exp, inf, log1p, nan

import numpy as np

MAX_ELEMENTS = 64


def _lead(row: list[float]) -> tuple[float, int, float] | None:
    """``(m, k, log1p(sum_{c != k} exp(x_c - m)))``, or None for an undefined row."""
    total = sum(row)  # NaN if the row holds NaN, or both +inf and -inf
    m = max(row)
    if total != total or m == inf or m == -inf:
        return None
    k = row.index(m)
    rest = 0.0
    for c, v in enumerate(row):
        if c != k:
            rest += exp(v - m)
    return m, k, log1p(rest)


def _rows(a: np.ndarray, classes: int) -> list[list[float]]:
    return a.tolist() if a.ndim == 2 else a.reshape(-1, classes).tolist()


def _array(values: list, like: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.array(values, like.dtype)
    return out if out.shape == shape else out.reshape(shape)


def _map_rows(x: np.ndarray, values: Callable[[list[float], float, float], list[float]]
              ) -> np.ndarray:
    """``values(row, m, log1p(s'))`` for every row of ``x``; NaN rows where undefined."""
    out = []
    for row in _rows(x, x.shape[-1]):
        lead = _lead(row)
        out.append([nan] * len(row) if lead is None else values(row, lead[0], lead[2]))
    return _array(out, x, x.shape)


def softmax(x: np.ndarray) -> np.ndarray:
    return _map_rows(x, lambda row, m, rest: [exp((v - m) - rest) for v in row])


def log_softmax(x: np.ndarray) -> np.ndarray:
    return _map_rows(x, lambda row, m, rest: [(v - m) - rest for v in row])


def dense_loss(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    classes = x.shape[-1]
    out = []
    for yr, row in zip(_rows(y, classes), _rows(x, classes)):
        lead = _lead(row)
        if lead is None:
            out.append(nan)
            continue
        m, _, rest = lead
        loss = 0.0
        for yc, v in zip(yr, row):
            if yc != 0:  # a label-0 class adds exactly 0, also at a masked (-inf) logit
                loss += yc * ((m - v) + rest)
        out.append(loss)
    return _array(out, x, x.shape[:-1])


def sparse_loss(labels: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = []
    for label, row in zip(labels.ravel().tolist(), _rows(x, x.shape[-1])):
        lead = _lead(row)
        out.append(nan if lead is None else (lead[0] - row[label]) + lead[2])
    return _array(out, x, x.shape[:-1])
