"""A small exact (mpmath, 50 digits) reference for the tests of the NumPy backend."""

from __future__ import annotations

import mpmath
import numpy as np

mpmath.mp.dps = 50


def loss_rows(labels: np.ndarray, logits: np.ndarray) -> list[mpmath.mpf]:
    """sum_c y_c (logsumexp(x) - x_c) per row of 2-D inputs, label-0 classes skipped."""
    out = []
    for y_row, x_row in zip(labels.astype(np.float64), logits.astype(np.float64)):
        xs = [mpmath.mpf(float(v)) for v in x_row]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
        out.append(mpmath.fsum(mpmath.mpf(float(y)) * (lse - v) for y, v in zip(y_row, xs)
                               if y != 0))
    return out


def log_softmax_rows(logits: np.ndarray) -> list[list[mpmath.mpf]]:
    out = []
    for x_row in logits.astype(np.float64):
        xs = [mpmath.mpf(float(v)) for v in x_row]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
        out.append([v - lse for v in xs])
    return out


def relative_error_in_eps(value: np.ndarray, exact: list, dtype: np.dtype) -> float:
    """max |value - exact| / |exact|, in units of eps(dtype)."""
    import ml_dtypes

    eps = float(ml_dtypes.finfo(dtype).eps)
    worst = 0.0
    for v, e in zip(np.asarray(value, np.float64).ravel(), np.ravel(np.array(exact, object))):
        if e == 0:
            worst = max(worst, abs(v) / eps)
        else:
            worst = max(worst, float(abs((mpmath.mpf(float(v)) - e) / e)) / eps)
    return worst
