"""Row kernels of the NumPy backend: one block of rows, classes along axis 1.

Every kernel takes ``x`` of shape ``[rows, num_classes]`` in the compute dtype (float32 or
float64), C-contiguous, and never writes to it (it may be the caller's array). Scratch
arrays come from the caller, so a kernel allocates only per-row vectors.

Accuracy: with ``m = max(x)`` at index ``k`` and ``s' = sum_{c != k} exp(x_c - m)``,

    logsumexp(x) - x_c = (m - x_c) + log1p(s')

Both terms are >= 0, so the loss ``sum_c y_c (m - x_c) + log1p(s') * sum_c y_c`` is a sum of
non-negative terms for non-negative labels: accurate to a few eps *relative*, also for
confident predictions whose loss is far below eps (where ``log(sum exp)`` rounds to 0).
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def _lead(x: Array) -> tuple[Array, Array]:
    """Flat index of each row's maximum (first NaN if any) and the maximum itself."""
    flat = x.argmax(axis=1)
    flat += np.arange(0, x.size, x.shape[1])
    return flat, x.ravel().take(flat)


def _log1p_rest(x: Array, flat: Array, m: Array, scratch: Array) -> Array:
    """``log1p(sum_{c != k} exp(x_c - m))`` per row: logsumexp(x) - m without rounding 1 + s'.

    NaN for a row whose maximum is +inf (or NaN): such a row has no defined loss."""
    e = np.subtract(x, m[:, None], out=scratch)
    np.exp(e, out=e)
    e.ravel()[flat] = 0.0  # drop the leading exp(0) = 1: log1p adds it back exactly
    rest = np.log1p(np.add.reduce(e, axis=1))
    rest += m - m  # +inf - +inf = NaN marks rows with a +inf logit
    return rest


def softmax(x: Array, out: Array) -> None:
    m = x.max(axis=1, keepdims=True)
    np.subtract(x, m, out=out)
    np.exp(out, out=out)
    np.divide(out, np.add.reduce(out, axis=1, keepdims=True), out=out)


def log_softmax(x: Array, out: Array, scratch: Array) -> None:
    flat, m = _lead(x)
    rest = _log1p_rest(x, flat, m, scratch)
    np.subtract(x, m[:, None], out=out)
    np.subtract(out, rest[:, None], out=out)


def sparse_loss(labels: Array, x: Array, scratch: Array) -> Array:
    """``(m - x[label]) + log1p(s')`` per row; labels already checked to be in range."""
    flat, m = _lead(x)
    rest = _log1p_rest(x, flat, m, scratch)
    picked = x.ravel().take(labels + np.arange(0, x.size, x.shape[1]))
    return (m - picked) + rest


def dense_loss(y: Array, x: Array, scratch: Array, scratch2: Array) -> Array:
    """``sum_c y_c (m - x_c) + log1p(s') * sum_c y_c`` per row, 0 for ``y_c == 0`` classes.

    ``y`` may be of any real dtype: it is cast block by block inside the ufuncs."""
    flat, m = _lead(x)
    d = np.subtract(x, m[:, None], out=scratch2)  # x - m <= 0
    weighted = np.multiply(y, d, out=scratch, dtype=x.dtype, casting="unsafe")
    below = np.add.reduce(weighted, axis=1)  # sum_c y_c (x_c - m) <= 0
    rest = _log1p_rest(x, flat, m, scratch2)
    loss = rest * np.add.reduce(y, axis=1, dtype=x.dtype) - below
    if np.isnan(np.add.reduce(loss)):
        _fix_masked_rows(loss, y, x, m)
    return loss


def _fix_masked_rows(loss: Array, y: Array, x: Array, m: Array) -> None:
    """Recompute rows where ``0 * -inf`` (label 0 at a masked class) made NaN.

    Only rows with a finite maximum can be fixed: NaN or +inf logits, or a row masked
    everywhere, stay NaN, as do NaN labels."""
    rows = np.flatnonzero(np.isnan(loss) & np.isfinite(m))
    if rows.size == 0:
        return
    yr = y[rows].astype(x.dtype)
    xr = x[rows]
    d = xr - m[rows, None]
    flat, _ = _lead(xr)
    rest = _log1p_rest(xr, flat, m[rows], np.empty_like(xr))
    below = np.add.reduce(np.where(yr == 0, 0, yr * d), axis=1)
    loss[rows] = rest * np.add.reduce(yr, axis=1) - below
