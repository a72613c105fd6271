"""The exact reference with loss options (DESIGN section 6), built on :func:`exact`.

An option changes the inputs of the plain formula, not the formula: with ``m`` the
``where`` mask, ``e`` the smoothing, ``w`` the class weights and ``s`` the row weights,

    x~ = where(m, x, -inf),   u = where(m, (1 - e) y + e / C, 0) * w,
    loss = s * plain_loss(x~, u),   dlogits = s * plain_dlogits(x~, u),
    dlabels = s * where(m, (1 - e) w, 0) * plain_dlabels(x~, u)

with every derivative 0 at an excluded class (also in a NaN row: it is never read), and a
sparse label is the one-hot row it stands for (a row with ``ignore_index``: 0, every
derivative 0). ``u`` is rounded to float64 once (the catalog's option values are dyadic, so
the rounding is of ``e / C`` and of soft labels only: below a unit of the metric); the row
weights are applied exactly (mpmath). Reductions (``mean``, ``weighted_mean``) are exact sums
and quotients of the exact rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xent.conformance.reference import _CTX, Exact, _split, exact

_FORWARD = ("jvp_softmax", "jvp_log_softmax")


def exact_with_options(
    logits: np.ndarray, labels: np.ndarray, sparse: np.ndarray | None, axis: int,
    options: Mapping[str, Any], tangents: tuple[np.ndarray, np.ndarray | None],
) -> dict[str, Exact]:
    """Every quantity of :func:`exact`, with ``options``, plus the reductions ``loss_mean``,
    ``loss_weighted_mean`` (and ``sparse_``) of the option cases. ``options`` holds NumPy
    values: ``where``, ``class_weights``, ``weights``, ``label_smoothing``, ``ignore_index``."""
    shape, num_classes = logits.shape, logits.shape[axis]
    reduced = shape[:axis] + shape[axis + 1 :]
    mask = np.broadcast_to(options.get("where", True), shape)
    e = float(options.get("label_smoothing", 0.0))
    cw = np.asarray(options.get("class_weights", np.ones(num_classes)), np.float64)
    along = cw.reshape([-1 if d == axis else 1 for d in range(len(shape))])
    rows = np.broadcast_to(np.asarray(options.get("weights", 1.0), np.float64), reduced)
    xt = np.where(mask, logits, -np.inf)
    chain = np.where(mask, (1.0 - e) * along, 0.0)  # d u / d labels

    def effective(y: np.ndarray) -> np.ndarray:
        smoothed = (1.0 - e) * y + e / num_classes if e else y
        return np.where(mask, smoothed, 0.0) * along

    dx, dy = tangents
    dx = np.where(mask, dx, 0.0)  # an excluded logit is never read: its tangent goes nowhere
    plain = exact(xt, effective(labels), None, axis,
                  (dx, None if dy is None else chain * dy))
    out = {q: plain[q] for q in ("softmax", "log_softmax", *_FORWARD)}
    jl = out["jvp_log_softmax"]  # log_softmax is -inf at an excluded class: its jvp is moot
    out["jvp_log_softmax"] = Exact(jl.hi, jl.lo, jl.scale, jl.care & mask)
    s = np.expand_dims(rows, axis)
    out["loss"], out["jvp_loss"] = _times(plain["loss"], rows), _times(plain["jvp_loss"], rows)
    out["dlogits"] = _times(plain["dlogits"], s, mask)  # excluded: 0, also in a NaN row
    out["dlabels"] = _times(plain["dlabels"], s * chain, mask)  # excluded: never read
    omega = rows * (np.moveaxis(labels, axis, -1) @ cw) if "class_weights" in options else rows
    out["loss_mean"] = _quotient(out["loss"], np.ones(reduced), np.ones(reduced, bool))
    out["loss_weighted_mean"] = _quotient(out["loss"], omega, np.ones(reduced, bool))
    if sparse is not None:
        ignore = options.get("ignore_index")
        kept = np.ones(reduced, bool) if ignore is None else sparse != ignore
        index = np.where(kept, sparse, 0)
        one_hot = np.zeros(shape)
        np.put_along_axis(one_hot, np.expand_dims(index, axis), 1.0, axis)
        one_hot *= np.expand_dims(kept, axis)
        ps = exact(xt, effective(one_hot), None, axis, (dx, None))
        keep_rows = np.where(kept, rows, 0.0)
        out["sparse_loss"] = _times(ps["loss"], keep_rows, kept)
        out["jvp_sparse_loss"] = _times(ps["jvp_loss"], keep_rows, kept)
        out["sparse_dlogits"] = _times(ps["dlogits"], np.expand_dims(keep_rows, axis),
                                       np.expand_dims(kept, axis) & mask)
        s_omega = rows * (cw[index] if "class_weights" in options else 1.0)
        out["sparse_loss_mean"] = _quotient(out["sparse_loss"], kept.astype(float), kept)
        out["sparse_loss_weighted_mean"] = _quotient(out["sparse_loss"], s_omega, kept)
    return out


def _times(q: Exact, factor: np.ndarray, kept: np.ndarray | None = None) -> Exact:
    """``q * factor`` elementwise, exactly, with IEEE's ``0 * inf = 0 * nan = nan`` (a row
    weight of 0 does not clear a NaN row); where ``kept`` is False the value is 0 and
    specified (an ignored row, an excluded class: never read)."""
    factor = np.broadcast_to(factor, q.shape)
    kept = np.broadcast_to(True if kept is None else kept, q.shape)
    hi, lo = np.zeros(q.shape), np.zeros(q.shape)
    mp = _CTX
    with np.errstate(invalid="ignore"):
        for at in np.ndindex(q.shape):
            f = float(factor[at])
            if not kept[at]:
                continue
            if f == 0.0 or not np.isfinite(q.hi[at]):
                hi[at] = q.hi[at] * f
                continue
            hi[at], lo[at] = _split((mp.mpf(float(q.hi[at])) + mp.mpf(float(q.lo[at]))) * f)
    with np.errstate(invalid="ignore"):  # inf scales (unspecified rows) times 0
        scale = np.where(kept, q.scale * np.abs(factor), 0.0)
    return Exact(hi, lo, scale, q.care | ~kept)


def _quotient(loss: Exact, omega: np.ndarray, kept: np.ndarray) -> Exact:
    """``sum(loss) / sum(omega over the kept rows)``, a scalar; NaN for 0 / 0."""
    mp = _CTX
    total = mp.fsum(mp.mpf(float(h)) + mp.mpf(float(lo)) for h, lo in zip(
        loss.hi.ravel(), loss.lo.ravel()))
    denominator = mp.fsum(mp.mpf(float(w)) for w, k in zip(omega.ravel(), kept.ravel()) if k)
    count = loss.hi.size
    if denominator == 0:
        value: Any = _CTX.nan if total == 0 else _CTX.inf * mp.sign(total)
    else:
        value = total / denominator
    hi, lo = _split(value)
    # summing ``count`` rows costs up to ``count`` eps of their magnitudes; so does the
    # denominator, relative to the quotient
    with np.errstate(invalid="ignore"):
        bound = float(np.nansum(loss.scale) + count * np.nansum(np.abs(loss.hi)))
    scale = bound / abs(float(denominator)) + count * abs(hi) if denominator else 0.0
    return Exact(np.array(hi), np.array(lo), np.array(scale), np.array(True))
