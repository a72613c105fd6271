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

    @property
    def plain(self) -> bool:
        """Nothing to fold in: no smoothing, class weights or row mask."""
        return not self.smoothing and self.class_weights is None and self.row_mask is None


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
                p: Plan) -> tuple[Array, Array | None]:
    """Per-row loss and suspect rows (None: none) for integer ``labels`` (``[rows]``, in
    range); ``mask``: the ``where`` tile as 0/1 floats, or None (``p.row_mask`` or none)."""
    labels = labels.astype(np.intp, copy=False)  # uint64 + int64 would promote to float64
    flat, m = kernels.lead(x)
    d = kernels.by_rows(np.subtract, x, m[:, None], scratch("e", x.shape, x.dtype))
    e = p.smoothing
    if e:
        total, dots = _smoothing_sums(d, mask, p)  # may zero d where excluded
    u: Any = 0.0
    lin: Any = 0.0
    if e != 1.0:  # e = 1: the labels do not matter (and 0 * inf must not appear)
        at = labels + kernels.row_starts(x)
        u = _label_weight(labels, at, mask, p, 1.0 - e, x.dtype)
        lin = u * d.ravel().take(at)
    if e:
        u = u + (e / p.classes) * total
        lin = lin + (e / p.classes) * dots
    return _finish(d, flat, m, mask, p, u, lin)


def dense_loss(y: Array, x: Array, mask: Array | None,
               p: Plan) -> tuple[Array, Array | None]:
    """Per-row loss and suspect rows (None: none) for labels ``y`` (``[rows, C]``, the dtype
    of ``x``); ``mask`` as in :func:`sparse_loss`.

    No product of the labels is written where it can be helped (a third tile in the cache,
    written out of place): class weights or a row mask without a mask tile take ``exp(d)``
    aside and then weigh ``d`` in place (``U = y . kw``, ``D = y . (kw d)``); a mask tile
    without class weights zeroes ``d`` where it excludes (``U = y . k``, ``D = y . d``). With
    both, the labels' product ``u = (1 - e) (y + e / (C (1 - e))) k w`` holds the smoothing
    too: ``U`` and ``D`` are two BLAS dots."""
    flat, m = kernels.lead(x)
    d = kernels.by_rows(np.subtract, x, m[:, None], scratch("e", x.shape, x.dtype))
    e, classes = p.smoothing, p.classes
    zero_at = mask if p.class_weights is None else None  # a mask tile applied to d itself
    zeroed = zero_at is not None
    if zero_at is not None:
        np.multiply(d, zero_at, out=d)  # NaN where a NaN or infinite logit is excluded: suspect
    if e == 1.0:  # the labels do not matter: u = k w / C
        total, dots = _smoothing_sums(d, mask, p, zeroed)
        return _finish(d, flat, m, mask, p, total / classes, dots / classes)
    w = p.row_weights
    if mask is None and w is not None:  # exp(d) aside, then d <- k w d in place
        ex = np.exp(d, out=scratch("u", d.shape, d.dtype))
        kernels.by_rows(np.multiply, d, w, d)  # NaN at 0 * -inf: suspect
        u, lin = kernels.row_dot(y, w), kernels.row_dot(y, d)
        if e:
            u = (1.0 - e) * u + (e / classes) * p.total
            lin = (1.0 - e) * lin + (e / classes) * kernels.row_sum(d)
        return _finish(d, flat, m, mask, p, u, lin, ex)
    shift = e / (classes * (1.0 - e)) if e and mask is not None and not zeroed else 0.0
    if zero_at is not None:
        u, lin = kernels.row_dot(y, zero_at), kernels.row_dot(y, d)
    else:
        y = _weighted_labels(y, mask, p, shift)
        u, lin = kernels.row_sum(y), kernels.row_dot(y, d)
    if e:
        u *= 1.0 - e
        lin *= 1.0 - e
    if e and not shift:
        total, dots = _smoothing_sums(d, mask, p, zeroed)
        u += (e / classes) * total
        lin += (e / classes) * dots
    return _finish(d, flat, m, mask, p, u, lin)


def _weighted_labels(y: Array, mask: Array | None, p: Plan, shift: float) -> Array:
    """``(y + shift) k w`` for a mask tile, in one scratch array; ``y`` itself without."""
    if mask is None:
        return y
    out = scratch("u", y.shape, y.dtype)
    if shift:
        y = np.add(y, shift, out=out)
    y = np.multiply(y, mask, out=out)
    w = p.class_weights
    return y if w is None else kernels.by_rows(np.multiply, y, w, out)


def _label_weight(labels: Array, at: Array, mask: Array | None, p: Plan, scale: float,
                  dtype: np.dtype) -> Any:
    """``a = scale * k_l * w_l`` per row (a number when it is the same for every row)."""
    a: Any = scale
    if p.class_weights is not None:
        a = p.class_weights.take(labels) * a
    if mask is not None:
        a = mask.ravel().take(at) * a
    elif p.row_mask is not None:
        a = p.row_mask.take(labels) * a
    return np.full(labels.shape, a, dtype) if isinstance(a, float) else a


def _smoothing_sums(d: Array, mask: Array | None, p: Plan,
                    zeroed: bool = False) -> tuple[Any, Array]:
    """``A = sum_c k_c w_c`` (per row, or one number) and ``B = sum_c k_c w_c d_c``.
    ``zeroed``: ``d`` is already 0 where a mask tile excludes. With class weights, a mask tile
    zeroes ``d`` there (``exp(d)`` is summed through the mask anyway), to keep ``w`` on the
    ``[C]`` side of the dot."""
    if mask is None:
        w = p.row_weights
        return p.total, kernels.row_sum(d) if w is None else kernels.row_dot(d, w)
    w = p.class_weights
    if w is None:
        return kernels.row_sum(mask), kernels.row_sum(d) if zeroed else kernels.row_dot(d, mask)
    if not zeroed:
        np.multiply(d, mask, out=d)
    return kernels.row_dot(mask, w), kernels.row_dot(d, w)


def _finish(d: Array, flat: Array, m: Array, mask: Array | None, p: Plan,
            u: Any, lin: Any, exps: Array | None = None) -> tuple[Array, Array | None]:
    """``loss = U r - D`` from ``exps = exp(d)`` (given, or ``d`` overwritten by it), and the
    suspect rows.

    ``r = log1p(s + kept - 1)``: ``log1p(s)`` where the maximum is kept, and ``log(s)`` as
    ``log1p(s - 1)`` where it is not, accurate while ``s >= 1`` (``s - 1`` exact up to 2,
    then relatively accurate); below that (``r < 0``), ``log(s)`` on those rows."""
    e = np.exp(d, out=d) if exps is None else exps
    e.ravel()[flat] = 0.0  # drop the leading exp(0) = 1: log1p adds it back exactly
    kept = None  # 1 where the row's maximum is kept, 0 where it is excluded (floats)
    if mask is not None:
        s, kept = kernels.row_dot(e, mask), mask.ravel().take(flat)
    elif p.row_mask is not None:
        s = kernels.row_dot(e, p.row_mask)
        kept = p.row_mask.take(flat - kernels.row_starts(e))
    else:
        s = kernels.row_sum(e)
    t = s if kept is None else s + (kept - 1.0)
    r = np.log1p(t)
    loss = u * r - lin
    if np.isfinite(np.add.reduce(loss) + np.add.reduce(m)) and (kept is None or t.min() >= 0):
        return loss, None  # the usual tile: every row finite, and r >= 0
    if kept is not None:
        low = t < 0  # maximum excluded, s < 1
        if low.any():
            r[low] = np.log(s[low])
            loss = u * r - lin
    suspect = ~(np.isfinite(m) & (loss >= -u * r))  # NaN, or U r < 0 cancelling over half
    if kept is not None:
        suspect |= (kept == 0) & (s < p.underflow)
    return loss, suspect if suspect.any() else None
