"""The exact reference: every quantity of the conformance suite, computed with mpmath.

Inputs are the float64 values of the (already rounded) case inputs, so the reference is
exact for exactly what the backend received, and only the backend's arithmetic is measured.
Each row (the class axis moved last) is computed at :data:`DIGITS` significant digits and
kept as a double-double ``hi + lo`` (``hi`` is the correctly rounded float64), so errors of
float64 backends are measured without the reference's own rounding.

Conventions (DESIGN section 2), with ``lse = logsumexp(logits)`` and ``S = sum_c labels_c``:

- ``softmax = exp(logits - lse)``, ``log_softmax = logits - lse``;
- ``loss = sum_{c: labels_c != 0} labels_c * (lse - logits_c)``: a class with label 0
  contributes exactly 0, also at a masked class (``logits_c = -inf``);
- ``sparse_loss = lse - logits[label]``;
- ``dlogits = softmax * S - labels`` and ``dlabels = lse - logits`` (``+inf`` at a masked
  class), the gradients of the summed loss;
- a row with a NaN (logits or labels) is NaN in every quantity, gradients included;
- a row with a ``+inf`` logit, or with every logit ``-inf``, is NaN in every value; its
  gradients are unspecified (``care`` is False there).

Forward mode (given tangents ``dx`` for logits and ``dy`` for labels, or no ``dy``):
``jvp_loss = sum_c dlogits_c dx_c + dlabels_c dy_c``, ``jvp_sparse_loss = sum_c
sparse_dlogits_c dx_c``, ``jvp_log_softmax = dx - sum_k softmax_k dx_k`` and ``jvp_softmax =
softmax * jvp_log_softmax``; like the gradients, unspecified on a ``+inf`` or all ``-inf`` row.

Each quantity also carries its ``scale`` (see :mod:`xent.conformance.metric`): the bound on
the error an accurate float implementation makes, in units of the output's eps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:
    import mpmath
except ImportError as error:  # a test dependency, not a runtime one
    raise ImportError("the conformance suite needs mpmath: pip install 'xent[test]'") from error

#: Significant decimal digits of the reference arithmetic.
DIGITS = 50

_CTX = mpmath.MPContext()
_CTX.dps = DIGITS
_NAN = float("nan")
_INF = float("inf")


@dataclass(frozen=True)
class Exact:
    """One quantity's exact value ``hi + lo`` (float64 arrays), its error scale, and where
    the value is specified (``care``)."""

    hi: np.ndarray
    lo: np.ndarray
    scale: np.ndarray
    care: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape


def _split(value: object) -> tuple[float, float]:
    """An mpf (or inf / nan) as the double-double ``(hi, lo)``."""
    hi = float(value)  # type: ignore[arg-type]
    if not np.isfinite(hi):
        return hi, 0.0
    return hi, float(value - _CTX.mpf(hi))


class _Rows:
    """Output buffers of one quantity, filled row by row: ``[rows, n]`` hi, lo, scale, care."""

    def __init__(self, rows: int, n: int) -> None:
        self.hi = np.zeros((rows, n))
        self.lo = np.zeros((rows, n))
        self.scale = np.zeros((rows, n))
        self.care = np.ones((rows, n), bool)

    def nan(self, r: int, care: bool = True) -> None:
        self.hi[r], self.lo[r], self.scale[r], self.care[r] = _NAN, 0.0, 0.0, care

    def exact(self, shape: tuple[int, ...], axis: int | None) -> Exact:
        """As an :class:`Exact` of ``shape``; ``axis`` (the class axis) moved back in place."""
        parts = []
        for a in (self.hi, self.lo, self.scale, self.care):
            if axis is None:
                parts.append(a.reshape(shape))
            else:
                moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
                parts.append(np.moveaxis(a.reshape(moved), -1, axis))
        return Exact(*parts)


def exact(
    logits: np.ndarray, labels: np.ndarray | None, sparse: np.ndarray | None, axis: int,
    tangents: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> dict[str, Exact]:
    """The reference for every quantity the inputs define.

    Args:
      logits: ``[..., num_classes, ...]`` float64 (the rounded case inputs).
      labels: dense labels, the shape of ``logits``, or None.
      sparse: integer labels, the shape of ``logits`` without ``axis``, or None.
      axis: the class axis (non-negative).
      tangents: ``(dx, dy)``, forward-mode directions for logits and labels (``dy`` None:
        labels held constant), the shapes of ``logits`` and ``labels``; or None.

    Returns ``{"softmax", "log_softmax"}`` plus ``"loss", "dlogits", "dlabels"`` when
    ``labels`` is given and ``"sparse_loss", "sparse_dlogits"`` when ``sparse`` is, and with
    ``tangents`` the ``jvp_`` of each of them.

    >>> r = exact(np.array([[0.5, 1.5, 0.1]]), np.array([[0.0, 1.0, 0.0]]), None, 1)
    >>> round(float(r["loss"].hi[0]), 7)
    0.4790107
    """
    shape = logits.shape
    num_classes = shape[axis]
    x2 = np.moveaxis(logits, axis, -1).reshape(-1, num_classes)
    rows = x2.shape[0]
    out = {q: _Rows(rows, num_classes) for q in ("softmax", "log_softmax")}
    y2 = None
    if labels is not None:
        y2 = np.moveaxis(labels, axis, -1).reshape(-1, num_classes)
        out.update(loss=_Rows(rows, 1), dlogits=_Rows(rows, num_classes),
                   dlabels=_Rows(rows, num_classes))
    s1 = None
    if sparse is not None:
        s1 = np.asarray(sparse).reshape(-1)
        out.update(sparse_loss=_Rows(rows, 1), sparse_dlogits=_Rows(rows, num_classes))
    dx2 = dy2 = None
    if tangents is not None:
        dx2 = np.moveaxis(tangents[0], axis, -1).reshape(-1, num_classes)
        if tangents[1] is not None:
            dy2 = np.moveaxis(tangents[1], axis, -1).reshape(-1, num_classes)
        out.update(jvp_softmax=_Rows(rows, num_classes), jvp_log_softmax=_Rows(rows, num_classes))
        if y2 is not None:
            out["jvp_loss"] = _Rows(rows, 1)
        if s1 is not None:
            out["jvp_sparse_loss"] = _Rows(rows, 1)
    for r in range(rows):
        _row(out, r, x2[r], None if y2 is None else y2[r], None if s1 is None else int(s1[r]))
        if dx2 is not None:
            _forward(out, r, x2[r], None if y2 is None else y2[r],
                     None if s1 is None else int(s1[r]), dx2[r], None if dy2 is None else dy2[r])
    reduced = shape[:axis] + shape[axis + 1 :]
    return {
        q: rows_.exact(reduced if q.endswith("loss") else shape,
                       None if q.endswith("loss") else axis)
        for q, rows_ in out.items()
    }


def _row(out: dict[str, _Rows], r: int, x: np.ndarray, y: np.ndarray | None,
         label: int | None) -> None:
    nan_row = bool(np.isnan(x).any() or (y is not None and np.isnan(y).any()))
    if nan_row or np.isposinf(x).any() or np.isneginf(x).all():
        for name, rows in out.items():  # NaN everywhere; derivatives unspecified unless NaN
            rows.nan(r, care=nan_row or not name.startswith(("d", "sparse_d", "jvp_")))
        return
    mp = _CTX
    values, inverse = np.unique(x, return_inverse=True)  # exp once per distinct logit
    finite = np.isfinite(values)
    m = mp.mpf(float(values[finite].max()))
    counts = np.bincount(inverse, minlength=values.size)
    exps = [mp.exp(mp.mpf(float(v)) - m) if f else mp.zero for v, f in zip(values, finite)]
    total_exp = mp.fsum(int(c) * e for c, e in zip(counts, exps))
    lse = m + mp.log(total_exp)
    lse_f = abs(float(lse))
    ax = np.abs(x)
    p_of = [e / total_exp for e in exps]
    p = np.array([float(v) for v in p_of])[inverse]
    # softmax: relative error from rounding (1) and from logits - lse (|x| + |lse|)
    rows = out["softmax"]
    _fill(rows, r, [_split(v) for v in p_of], inverse)
    rows.scale[r] = np.where(p == 0, 0.0, p * (1.0 + np.where(finite[inverse], ax, 0.0) + lse_f))
    rows = out["log_softmax"]
    _fill(rows, r, [_split(mp.mpf(float(v)) - lse) if f else (-_INF, 0.0)
                    for v, f in zip(values, finite)], inverse)
    rows.scale[r] = ax + lse_f
    diff = [lse - mp.mpf(float(v)) if f else mp.inf for v, f in zip(values, finite)]
    if y is not None:
        nonzero = np.flatnonzero(y)
        loss = mp.fsum(mp.mpf(float(y[c])) * diff[inverse[c]] for c in nonzero)
        out["loss"].hi[r, 0], out["loss"].lo[r, 0] = _split(loss)
        out["loss"].scale[r, 0] = float(np.sum(np.abs(y[nonzero]) * (ax[nonzero] + lse_f)))
        total = mp.fsum(mp.mpf(float(v)) for v in y[nonzero])
        _gradients(out["dlogits"], r, p_of, inverse, y, total, p, ax, lse_f)
        rows = out["dlabels"]
        _fill(rows, r, [_split(d) for d in diff], inverse)
        rows.scale[r] = ax + lse_f
    if label is not None:
        loss = diff[inverse[label]]
        out["sparse_loss"].hi[r, 0], out["sparse_loss"].lo[r, 0] = _split(loss)
        out["sparse_loss"].scale[r, 0] = ax[label] + lse_f
        onehot = np.zeros(x.shape)
        onehot[label] = 1.0
        _gradients(out["sparse_dlogits"], r, p_of, inverse, onehot, mp.one, p, ax, lse_f)


def _fill(rows: _Rows, r: int, pairs: list[tuple[float, float]], inverse: np.ndarray) -> None:
    hi, lo = np.array(pairs).reshape(-1, 2).T
    rows.hi[r], rows.lo[r] = hi[inverse], lo[inverse]


def _gradients(rows: _Rows, r: int, p_of: list, inverse: np.ndarray, y: np.ndarray,
               total: object, p: np.ndarray, ax: np.ndarray, lse_f: float) -> None:
    """``softmax * S - labels``, computed once per distinct (logit, label) pair."""
    pairs, where = np.unique(np.stack([inverse, y]), axis=1, return_inverse=True)
    mp = _CTX
    _fill(rows, r, [_split(p_of[int(i)] * total - mp.mpf(float(v))) for i, v in pairs.T],
          where.reshape(-1))
    ax_finite = np.where(np.isfinite(ax), ax, 0.0)
    rows.scale[r] = float(np.sum(np.abs(y))) * p * (1.0 + ax_finite + lse_f) + np.abs(y)


def _forward(out: dict[str, _Rows], r: int, x: np.ndarray, y: np.ndarray | None,
             label: int | None, dx: np.ndarray, dy: np.ndarray | None) -> None:
    """The ``jvp_`` quantities of row ``r`` along ``(dx, dy)`` (after :func:`_row`, whose
    exact gradients and scales they reuse)."""
    if np.isnan(out["softmax"].hi[r]).any():  # a NaN, +inf or all -inf row: set by _row
        return
    with np.errstate(over="ignore", invalid="ignore"):  # near the float64 limit: inf scales
        _forward_row(out, r, x, y, label, dx, dy)


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * b`` with ``0 * inf = 0`` (an infinite scale times a zero weight bounds nothing)."""
    return np.where((a == 0) | (b == 0), 0.0, a * b)


def _forward_row(out: dict[str, _Rows], r: int, x: np.ndarray, y: np.ndarray | None,
                 label: int | None, dx: np.ndarray, dy: np.ndarray | None) -> None:
    mp = _CTX
    values, inverse = np.unique(x, return_inverse=True)  # exp once per distinct logit
    finite = np.isfinite(values)
    m = mp.mpf(float(values[finite].max()))
    exps = [mp.exp(mp.mpf(float(v)) - m) if f else mp.zero for v, f in zip(values, finite)]
    total = mp.fsum(int(c) * e for c, e in zip(np.bincount(inverse), exps))
    lse = m + mp.log(total)
    p_of = [e / total for e in exps]
    lse_f, ax = abs(float(lse)), np.where(np.isfinite(x), np.abs(x), 0.0)
    pf, adx = np.array([float(v) for v in p_of])[inverse], np.abs(dx)
    # every sum runs over distinct (logit, tangent) pairs: few, for the catalog's grid tangents
    pairs, at = _distinct(inverse, dx)
    mean = mp.fsum(int(n) * p_of[int(i)] * mp.mpf(float(d))  # sum_k p_k dx_k
                   for (i, d), n in zip(pairs.T, np.bincount(at)) if d)
    spread = float(np.sum(_times(pf * adx, 2.0 + ax + lse_f)))  # bounds the mean's error
    t_of = [mp.mpf(float(d)) - mean for d in pairs[1]]
    rows = out["jvp_log_softmax"]
    _fill(rows, r, [_split(v) for v in t_of], at)
    rows.scale[r] = adx + spread
    rows = out["jvp_softmax"]
    _fill(rows, r, [_split(p_of[int(i)] * t) for i, t in zip(pairs[0], t_of)], at)
    t_f = np.abs(np.array([float(v) for v in t_of]))[at]
    rows.scale[r] = _times(pf, adx + spread + _times(t_f, 1.0 + ax + lse_f))

    def along(name: str, grad: str) -> None:
        g = out[grad]  # the exact gradient of _row, as hi + lo (106 bits)
        distinct, at = _distinct(g.hi[r], g.lo[r], dx)
        terms = [int(n) * (mp.mpf(float(hi)) + mp.mpf(float(lo))) * mp.mpf(float(d))
                 for (hi, lo, d), n in zip(distinct.T, np.bincount(at)) if hi and d]
        scale = float(np.sum(_times(adx, g.scale[r] + np.abs(g.hi[r]))))
        if dy is not None and name == "jvp_loss":  # dy is only given with no -inf logit
            d_of = [lse - mp.mpf(float(v)) for v in values]
            distinct, at = _distinct(inverse, dy)
            terms += [int(n) * d_of[int(i)] * mp.mpf(float(b))
                      for (i, b), n in zip(distinct.T, np.bincount(at)) if b]
            d_f = np.abs(np.array([float(v) for v in d_of]))[inverse]
            scale += float(np.sum(_times(np.abs(dy), ax + lse_f + d_f)))
        rows = out[name]
        rows.hi[r, 0], rows.lo[r, 0] = _split(mp.fsum(terms))
        rows.scale[r, 0] = scale

    if y is not None:
        along("jvp_loss", "dlogits")
    if label is not None:
        along("jvp_sparse_loss", "sparse_dlogits")


def _distinct(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct tuples of the elementwise ``columns`` (``[k, n]``) and, per element, the
    index of its tuple."""
    stacked = np.stack([np.asarray(c, np.float64) for c in columns])
    distinct, at = np.unique(stacked, axis=1, return_inverse=True)
    return distinct, at.reshape(-1)
