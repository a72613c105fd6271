"""Tiny inputs (a few dozen elements) in plain Python floats.

Below ~64 elements a NumPy call costs more than the arithmetic, so the same formulas as
``_numpy_kernels`` run here on Python floats (float64, hence at least as accurate for
float32 input): ``logsumexp(x) - x_c = (m - x_c) + log1p(sum_{c != k} exp(x_c - m))``.
A row with a NaN or +inf logit, or with every logit -inf, has no defined value (NaN).
The tests check that both paths agree.
"""

from __future__ import annotations

from math import exp, inf, log1p, nan

import numpy as np

MAX_ELEMENTS = 64


def _lead(row: list[float]) -> tuple[float, int, float] | None:
    """``(m, k, log1p(sum_{c != k} exp(x_c - m)))``, or None for an undefined row."""
    total = sum(row)  # NaN if the row holds NaN, or both +inf and -inf
    if total != total:
        return None
    m = max(row)
    if m == inf or m == -inf:
        return None
    k = row.index(m)
    rest = 0.0
    for c, v in enumerate(row):
        if c != k:
            rest += exp(v - m)
    return m, k, log1p(rest)


def softmax(x: np.ndarray) -> np.ndarray:
    out = []
    for row in x.reshape(-1, x.shape[-1]).tolist():
        lead = _lead(row)
        if lead is None:
            out.append([nan] * len(row))
            continue
        m, _, rest = lead
        scale = exp(-rest)
        out.append([exp(v - m) * scale for v in row])
    return np.array(out, x.dtype).reshape(x.shape)


def log_softmax(x: np.ndarray) -> np.ndarray:
    out = []
    for row in x.reshape(-1, x.shape[-1]).tolist():
        lead = _lead(row)
        if lead is None:
            out.append([nan] * len(row))
            continue
        m, _, rest = lead
        out.append([(v - m) - rest for v in row])
    return np.array(out, x.dtype).reshape(x.shape)


def dense_loss(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    classes = x.shape[-1]
    out = []
    for yr, row in zip(y.reshape(-1, classes).tolist(), x.reshape(-1, classes).tolist()):
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
    return np.array(out, x.dtype).reshape(x.shape[:-1])


def sparse_loss(labels: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = []
    for label, row in zip(labels.reshape(-1).tolist(), x.reshape(-1, x.shape[-1]).tolist()):
        lead = _lead(row)
        out.append(nan if lead is None else (lead[0] - row[label]) + lead[2])
    return np.array(out, x.dtype).reshape(x.shape[:-1])
