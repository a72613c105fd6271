"""Loss options, composed once for every backend (DESIGN section 6).

Per row, with ``C`` the size of the class axis, ``y`` the labels (one-hot for sparse),
``m`` the ``where`` mask, ``e`` the label smoothing, ``w`` the class weights and ``s`` the
row's weight:

    x~_c = x_c if m_c else -inf                       (an excluded class is never read)
    y~_c = ((1 - e) y_c + e / C) if m_c else 0
    loss = s * sum_c w_c y~_c (logsumexp(x~) - x~_c)  (a zero w_c y~_c adds exactly 0)

A sparse row whose label equals ``ignore_index`` is never read: loss 0, gradient 0. The
functions here build that from a backend's own kernels (the loss of section 2, which already
adds exactly 0 for a zero label at a ``-inf`` logit) and a few array operations every backend
provides (``where``, ``one_hot``, ``take``, ...: see ``Backend``), so gradients are the true
derivatives of the formula by the framework's own autodiff. They work on whole arrays, or on
one ``[rows, C]`` tile at a time (the NumPy backend, to bound its memory): nothing here mixes
rows. Reductions (:func:`reduce`) then sum, count and divide.
"""

from __future__ import annotations

import dataclasses
from typing import Any

Array = Any
_INF = float("inf")
_NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class Options:
    """Validated options, converted to the backend of the logits.

    ``weights``: broadcastable to the loss shape, in the logits' dtype (NumPy: any real
    dtype, cast block by block). ``class_weights``: ``[C]``, likewise. ``where``: boolean,
    broadcastable to the logits. ``smooths``: whether ``label_smoothing`` is non-zero (the
    value itself may be a traced scalar: JAX does not recompile per value).
    ``num_classes``: ``C`` when known statically, else None."""

    weights: Array | None = None
    class_weights: Array | None = None
    label_smoothing: Any = 0.0
    where: Array | None = None
    ignore_index: int | None = None
    num_classes: int | None = None
    smooths: bool = False

    @property
    def reshapes_labels(self) -> bool:
        """Whether the labels change class by class (so sparse labels become one-hot)."""
        return self.where is not None or self.smooths


def dense_rows(ops: Any, labels: Array, logits: Array, axis: int, opt: Options) -> Array:
    """The per-row dense loss with every option (before the reduction)."""
    keep = spread = None
    if opt.smooths:
        e = opt.label_smoothing
        keep, spread = 1.0 - e, e / _classes(ops, logits, axis, opt)
    y = dressed_labels(ops, labels, logits, axis, keep, spread, opt.where, opt.class_weights)
    loss = ops.softmax_cross_entropy_with_logits(y, kept_logits(ops, logits, opt.where), axis)
    return loss if opt.weights is None else loss * opt.weights


def dressed_labels(ops: Any, labels: Array, logits: Array, axis: int, keep: Any, spread: Any,
                   where: Any, class_weights: Any) -> Array:
    """The labels the loss weighs the classes by: ``where(where, labels * keep + spread, 0)
    * class_weights``, each part left out where None (``keep = 1 - e``, ``spread = e / C``
    for label smoothing ``e``). A backend that fuses the options (JAX) calls this inside
    its kernel."""
    y = labels
    if keep is not None:
        y = y * keep + spread
    if where is not None:
        y = ops.where(where, y, 0.0)
    if class_weights is not None:
        y = y * ops.along(class_weights, axis, logits)
    return y


def kept_logits(ops: Any, logits: Array, where: Any) -> Array:
    """``logits`` with ``-inf`` where ``where`` excludes a class (it does not exist)."""
    return logits if where is None else ops.where(where, logits, -_INF)


def sparse_rows(ops: Any, labels: Array, logits: Array, axis: int, opt: Options) -> Array:
    """The per-row sparse loss with every option (before the reduction).

    Equal to :func:`dense_rows` with one-hot labels: where the labels change class by class
    (``where``, label smoothing) they *are* made one-hot; else the backend's sparse kernel
    runs, times the class weight of each label."""
    x, ignored = logits, None
    if opt.ignore_index is not None:
        ignored = ops.equal(labels, opt.ignore_index)
        labels = ops.where(ignored, 0, labels)
        x = ops.where(ops.expand_dims(ignored, axis), 0.0, x)  # never read: NaN-safe gradients
    if opt.reshapes_labels:
        inside = ops.in_range(labels, _classes(ops, logits, axis, opt, static=True))
        one_hot = ops.one_hot(ops.where(inside, labels, 0), logits, axis)
        unweighted = dataclasses.replace(opt, weights=None)
        fused = getattr(ops, "fused_dense_rows", None)  # a backend's own pass of dense_rows
        loss = (dense_rows(ops, one_hot, x, axis, unweighted) if fused is None
                else fused(one_hot, x, axis, unweighted))
        loss = ops.where(inside, loss, _NAN)  # out of range (while tracing): NaN, as unoptioned
    else:
        loss = ops.sparse_softmax_cross_entropy_with_logits(labels, x, axis)
        if opt.class_weights is not None:
            loss = loss * ops.take(opt.class_weights, labels)
    if ignored is not None:
        loss = ops.where(ignored, 0.0, loss)
    return loss if opt.weights is None else loss * opt.weights


def _classes(ops: Any, logits: Array, axis: int, opt: Options, static: bool = False) -> Any:
    """``C``: a Python int when known, else the backend's run-time value (TF, unknown dims)."""
    if opt.num_classes is not None:
        return opt.num_classes
    return ops.class_count(logits, axis, None if static else ops.dtype_name(logits))


# -- reductions -------------------------------------------------------------------------------
def dense_denominator(ops: Any, labels: Array, loss: Array, axis: int,
                      opt: Options) -> Array | None:
    """``sum`` of ``omega`` for ``weighted_mean`` of a dense loss; None: the row count.

    ``omega_row = weights_row * sum_c class_weights_c * labels_c`` (the labels as given,
    before smoothing), or ``weights_row`` without class weights."""
    omega = None
    if opt.class_weights is not None:
        omega = ops.row_dot(labels, opt.class_weights, axis)
    if opt.weights is not None:
        omega = ops.broadcast_like(opt.weights, loss) if omega is None else omega * opt.weights
    return None if omega is None else ops.total(omega)


def sparse_denominator(ops: Any, labels: Array, loss: Array, opt: Options,
                       reduction: str) -> Array | None:
    """The denominator of ``mean`` / ``weighted_mean`` of a sparse loss over the rows not
    ignored; None: the plain row count (nothing ignored, no weights)."""
    kept = None if opt.ignore_index is None else ops.not_equal(labels, opt.ignore_index)
    if reduction == "weighted_mean" and (opt.class_weights is not None
                                         or opt.weights is not None):
        omega = None
        if opt.class_weights is not None:
            safe = labels if kept is None else ops.where(kept, labels, 0)
            omega = ops.take(opt.class_weights, safe)
        if opt.weights is not None:
            omega = (ops.broadcast_like(opt.weights, loss) if omega is None
                     else omega * opt.weights)
        if kept is not None:
            omega = ops.where(kept, omega, 0.0)
        return ops.total(omega)
    return None if kept is None else ops.count(kept, loss)


def reduce(ops: Any, loss: Array, reduction: str, denominator: Array | None) -> Array:
    """``"sum"``, ``"mean"`` or ``"weighted_mean"`` of the per-row ``loss``: the sum over
    ``denominator`` (None: the number of rows). An empty denominator gives NaN (0 / 0)."""
    if reduction == "sum" or denominator is None:
        return ops.reduce(loss, "sum" if reduction == "sum" else "mean")
    return ops.divide(ops.total(loss), denominator, loss)
