"""Row statistics of one block of classes, and how the statistics of blocks combine.

The Dask backend splits the class axis over chunks; one pass over the logits computes, per
row of a chunk (``x`` its logits, ``y`` its labels, ``m`` its maximum at index ``k``):

    m    max_c x_c
    r    sum_{c != k} exp(x_c - m)        the leading exp(0) = 1 left out, as log1p adds it
    b    sum_c y_c (m - x_c)              >= 0 for non-negative labels; 0 where y_c == 0
    n    sum_c y_c

Two chunks combine (a streaming logsumexp; ``a`` holds the larger maximum):

    m = m_a    r = r_a + exp(m_b - m) (1 + r_b)    b = b_a + b_b + (m - m_b) n_b    n = n_a + n_b

and the row's loss is ``b + log1p(r) n``: the NumPy kernels' ``(m - x_c) + log1p(s')``
(``_numpy_kernels``), a sum of non-negative terms, so relative accuracy survives the split.
A chunk whose classes are all ``-inf`` adds nothing to ``r`` (``exp(-inf) = 0``) and
``+inf`` to ``b`` only where a label sits on it (the loss's true value). A row with a NaN or
``+inf`` logit, or every logit ``-inf``, is NaN (``m - m``), as on NumPy.

Statistics are ``[..., 4]`` arrays (fields ``M, R, B, N``) in the compute dtype.
"""

from __future__ import annotations

import numpy as np

from xent.backends._numpy_kernels import lead
from xent.backends._numpy_tiles import quiet

Array = np.ndarray
FIELDS = 4
M, R, B, N = range(FIELDS)
_INF = np.inf


def _rest(d: Array, flat: Array, m: Array) -> Array:
    """``r`` per row from ``d = x - m`` (overwritten with ``exp(d)``)."""
    np.exp(d, out=d)
    d.ravel()[flat] = 0.0  # drop the leading exp(0) = 1: log1p adds it back exactly
    r = np.add.reduce(d, axis=1)
    r[m == -_INF] = 0.0  # classes all -inf add nothing (exp(x - m) is NaN there)
    return r


def _empty(rows: int, dtype: np.dtype) -> Array:
    """Statistics of rows with no class in this chunk: they add nothing."""
    out = np.zeros((rows, FIELDS), dtype)
    out[:, M] = -_INF
    return out


def lse_stats(x: Array, scratch: Array) -> Array:
    """``(m, r, 0, 0)`` per row of ``x`` (``[rows, C]``): what softmax needs. ``scratch``
    has the shape and dtype of ``x``."""
    out = _empty(x.shape[0], x.dtype)
    if x.shape[1]:
        flat, m = lead(x)
        out[:, M] = m
        out[:, R] = _rest(np.subtract(x, m[:, None], out=scratch), flat, m)
    return out


def dense_stats(y: Array, x: Array, scratch: Array) -> Array:
    """``(m, r, b, n)`` per row for labels ``y`` (the dtype of ``x``)."""
    out = _empty(x.shape[0], x.dtype)
    if not x.shape[1]:
        return out
    flat, m = lead(x)
    d = np.subtract(x, m[:, None], out=scratch)  # x - m <= 0
    # sum_c y_c (m - x_c) >= 0, before d becomes exp(d). Not np.negative(v, out=v) on this
    # strided column: NumPy 2.4's in-place float32 negative gets strided views wrong.
    out[:, B] = -np.vecdot(y, d)
    out[:, N] = np.add.reduce(y, axis=1)
    out[:, M] = m
    out[:, R] = _rest(d, flat, m)
    fix = np.flatnonzero((np.isnan(out[:, B]) | (m == -_INF)) & (m == m) & (m != _INF))
    if fix.size:  # 0 * inf: a zero label at a -inf logit adds exactly 0
        gap = m[fix, None] - x[fix]
        gap[np.isnan(gap)] = _INF  # a chunk of -inf classes: x_c = m = -inf
        yf = y[fix]
        out[fix, B] = np.add.reduce(np.where(yf == 0, 0, yf * gap), axis=1)
    return out


def sparse_stats(labels: Array, x: Array, first: int, num_classes: int,
                 scratch: Array) -> Array:
    """``(m, r, b, n)`` per row for one-hot labels given as global class indices; this chunk
    holds classes ``first, ..., first + C_chunk - 1``. A label outside ``[0, num_classes)``
    makes its row NaN (no chunk holds it)."""
    out = _empty(x.shape[0], x.dtype)
    if x.shape[1]:
        flat, m = lead(x)
        out[:, M] = m
        out[:, R] = _rest(np.subtract(x, m[:, None], out=scratch), flat, m)
        local = labels.astype(np.int64) - first
        here = (local >= 0) & (local < x.shape[1])
        picked = x.ravel().take(np.where(here, local, 0) + np.arange(0, x.size, x.shape[1]))
        gap = np.where(m == -_INF, _INF, m - picked)  # a label on a -inf class: +inf
        out[:, B] = np.where(here, gap, 0.0)
        out[:, N] = here
    out[(labels < 0) | (labels >= num_classes)] = np.nan
    return out


def combine(stats: Array, axis: tuple[int, ...], keepdims: bool = False) -> Array:
    """Combine the statistics of the chunks along ``axis`` (``dask.array.reduction``'s
    ``combine`` and ``aggregate``): ``[..., k, ..., 4] -> [..., 1, ..., 4]`` (or without the
    axis)."""
    (a,) = axis
    if stats.shape[-1] != FIELDS:  # an empty array, from Dask inferring metadata
        return np.empty((0,) * (stats.ndim - (not keepdims)), stats.dtype)
    s = np.moveaxis(stats, a, -2)  # [..., k, 4]
    m, r, b, n = (s[..., f] for f in range(FIELDS))
    with quiet():
        top = np.max(m, axis=-1, keepdims=True)
        lead = np.argmax(m, axis=-1)[..., None]  # the chunk that holds the row maximum
        t = np.exp(m - top)
        t[m == -_INF] = 0.0
        t *= 1.0 + r
        np.put_along_axis(t, lead, np.take_along_axis(r, lead, -1), -1)  # its r, without 1
        gap = top - m
        gap[m == -_INF] = _INF
        shift = gap * n
        shift[n == 0] = 0.0
        out = np.stack([top[..., 0], np.add.reduce(t, axis=-1),
                        np.add.reduce(b + shift, axis=-1), np.add.reduce(n, axis=-1)], axis=-1)
    return np.expand_dims(out, a) if keepdims else out


def loss(stats: Array) -> Array:
    """The row's loss from its combined statistics: ``b + log1p(r) n`` (NaN where ``m`` is
    not finite)."""
    if stats.shape[-1] != FIELDS:  # an empty array, from Dask inferring metadata
        return np.empty((0,) * (stats.ndim - 1), stats.dtype)
    m = stats[..., M]
    with quiet():
        out = stats[..., B] + np.log1p(stats[..., R]) * stats[..., N]
        out += m - m  # NaN for a NaN, +inf or all -inf row
    return out


def normalise(x: Array, m: Array, r: Array, log: bool) -> Array:
    """``log_softmax`` (``log``) or ``softmax`` of ``x`` given its rows' ``m`` and ``r``
    (broadcastable to ``x``, in the compute dtype, which the result has), as the NumPy
    kernels: ``(x - m) - log1p(r)`` and ``exp(x - m) / (1 + r)``."""
    with quiet():
        rest = m - m
        out = np.subtract(x, m, dtype=m.dtype)
        if log:
            rest += np.log1p(r)
            out -= rest
        else:
            rest += 1.0 + r
            np.exp(out, out=out)
            out /= rest
    return out
