"""Loss options folded into the passes of the NumPy row kernels, one ``[rows, C]`` tile.

With the options of ``xent._options`` (``k_c`` the ``where`` mask, ``w_c`` the class weights,
``e`` the label smoothing, ``C`` the classes), a row's loss is ``sum_c u_c (lse~ - x_c)`` with
``u_c = k_c w_c ((1 - e) y_c + e / C)`` and ``lse~`` the logsumexp of the kept classes. From
the maximum ``m`` over *all* classes (at ``k``), ``d = x - m <= 0`` and
``s = sum_{c kept, c != k} exp(d_c)``:

    r = lse~ - m = log1p(s) if k is kept, else log(s)
    loss = U r - D,    U = sum_c u_c,    D = sum_c u_c d_c

In the usual row (``k`` kept, weights >= 0) both ``U r`` and ``-D`` are >= 0: relative
accuracy, as in ``_numpy_kernels``. Sparse labels ``l`` never become one-hot:
``U = a + (e / C) A`` and ``D = a d_l + (e / C) B`` with ``a = (1 - e) k_l w_l``,
``A = sum_c k_c w_c`` and ``B = sum_c k_c w_c d_c``. Each option adds a row-sized step or one
BLAS dot over the tile, on the kernel's own ``d`` and ``exp(d)``.

A row is *suspect* where this arithmetic is not the formula, and the caller recomputes it with
the generic composition: NaN (a NaN or ``+inf`` logit, kept or not; ``0 * -inf`` where a zero
weight meets a ``-inf`` logit), or, ``k`` excluded, ``U r`` cancelling over half of ``-D``
(``r < 0``: a confident row whose maximum is excluded) or ``s`` near underflow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xent.backends import _numpy_kernels as kernels
from xent.backends._numpy_tiles import scratch

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class Plan:
    """The options of one call, in the compute dtype, for every tile.

    ``row_mask``: ``k`` as ``[C]`` 0/1 floats when ``where`` is the same for every row
    (else the caller passes a mask tile, or there is no mask). ``row_weights``: ``k_c w_c``
    as ``[C]`` where no mask tile varies it (None: all ones). ``total``: ``A`` then."""

    classes: int
    smoothing: float
    class_weights: Array | None
    row_mask: Array | None
    row_weights: Array | None
    total: float
    underflow: float  # s below this (k excluded): terms near the smallest normal number


def plan(classes: int, smoothing: float, class_weights: Any, row_mask: Any,
         dtype: np.dtype) -> Plan:
    """A :class:`Plan`; ``row_mask`` a boolean ``[C]`` or None."""
    w = None if class_weights is None else np.asarray(class_weights, dtype)
    k = None if row_mask is None else np.asarray(row_mask, dtype)
    kw = w if k is None else (k if w is None else k * w)
    info = np.finfo(dtype)
    return Plan(classes, smoothing, w, k, kw,
                float(classes if kw is None else np.add.reduce(kw, dtype=np.float64)),
                float(classes * info.tiny / info.eps))


def sparse_loss(labels: Array, x: Array, mask: Array | None,
                p: Plan) -> tuple[Array, Array]:
    """Per-row loss and suspect rows for integer ``labels`` (``[rows]``, in range);
    ``mask``: the ``where`` tile as 0/1 floats, or None (``p.row_mask`` or no mask)."""
    flat, m = kernels.lead(x)
    starts = np.arange(0, x.size, p.classes)
    d = np.subtract(x, m[:, None], out=scratch("e", x.shape, x.dtype))
    at = labels + starts
    e = p.smoothing
    if e == 1.0:  # the labels do not matter (and 0 * inf must not appear)
        u, lin = 0.0, 0.0
    else:
        u = np.full(labels.shape, 1.0 - e, x.dtype)
        if p.class_weights is not None:
            u *= p.class_weights.take(labels)
        if mask is not None:
            u *= mask.ravel().take(at)
        elif p.row_mask is not None:
            u *= p.row_mask.take(labels)
        lin = u * d.ravel().take(at)
    if e:
        total, dots = _smoothing_sums(d, mask, p)
        u = u + (e / p.classes) * total
        lin = lin + (e / p.classes) * dots
    return _finish(d, flat, starts, m, mask, p, u, lin)


def dense_loss(y: Array, x: Array, mask: Array | None, p: Plan) -> tuple[Array, Array]:
    """Per-row loss and suspect rows for labels ``y`` (``[rows, C]``, the dtype of ``x``);
    ``mask`` as in :func:`sparse_loss`."""
    flat, m = kernels.lead(x)
    starts = np.arange(0, x.size, p.classes)
    d = np.subtract(x, m[:, None], out=scratch("e", x.shape, x.dtype))
    e = p.smoothing
    u: Any = 0.0
    lin: Any = 0.0
    if e != 1.0:
        y = _weighted_labels(y, mask, p)
        u = kernels.row_sum(y)
        lin = kernels.row_dot(y, d)
        if e:
            u *= 1.0 - e
            lin *= 1.0 - e
    if e:
        total, dots = _smoothing_sums(d, mask, p)
        u = u + (e / p.classes) * total
        lin = lin + (e / p.classes) * dots
    return _finish(d, flat, starts, m, mask, p, u, lin)


def _weighted_labels(y: Array, mask: Array | None, p: Plan) -> Array:
    """``k_c w_c y_c``: ``y`` itself without a mask or class weights."""
    row = p.row_weights if mask is None else p.class_weights
    if mask is None and row is None:
        return y
    out = scratch("u", y.shape, y.dtype)
    if mask is None:
        return np.multiply(y, row, out=out)
    np.multiply(y, mask, out=out)
    return out if row is None else np.multiply(out, row, out=out)


def _smoothing_sums(d: Array, mask: Array | None, p: Plan) -> tuple[Any, Array]:
    """``A = sum_c k_c w_c`` (per row, or one number) and ``B = sum_c k_c w_c d_c``."""
    if mask is None:
        dots = kernels.row_sum(d) if p.row_weights is None else kernels.row_dot(d, p.row_weights)
        return p.total, dots
    kw = mask
    if p.class_weights is not None:
        kw = np.multiply(mask, p.class_weights, out=scratch("kw", mask.shape, mask.dtype))
    return kernels.row_sum(kw), kernels.row_dot(kw, d)


def _finish(d: Array, flat: Array, starts: Array, m: Array, mask: Array | None, p: Plan,
            u: Any, lin: Any) -> tuple[Array, Array]:
    """``loss = U r - D`` from ``d`` (overwritten by ``exp(d)``), and the suspect rows."""
    np.exp(d, out=d)
    d.ravel()[flat] = 0.0  # drop the leading exp(0) = 1: log1p adds it back exactly
    if mask is not None:
        s, kept = kernels.row_dot(d, mask), mask.ravel().take(flat) != 0
    elif p.row_mask is not None:
        s, kept = kernels.row_dot(d, p.row_mask), p.row_mask.take(flat - starts) != 0
    else:
        s, kept = kernels.row_sum(d), None
    r = np.log1p(s)
    if kept is not None and not kept.all():
        out = ~kept
        r[out] = np.log(s[out])  # lse~ - m < 0: no exact leading term to split off
    loss = u * r - lin
    loss += m - m  # NaN for a row with an infinite maximum
    suspect = ~(loss >= -u * r)  # NaN, or more than half of -D cancelled by U r < 0
    if kept is not None:
        suspect |= ~kept & (s < p.underflow)
    return loss, suspect
