"""Loss options folded into TensorFlow's loss formulation: fast paths of ``xent._options``.

``xent._options`` composes the options from whole-array operations: sparse labels become a
one-hot array as soon as ``where`` or label smoothing is given, ``ignore_index`` rewrites the
logits of the ignored rows, smoothing rewrites the labels. In TF eager each of those is a
pass over the ``[rows, C]`` memory. Here the options enter as row quantities around the one
``shifted`` pass of ``_tensorflow_ops``. Per row, classes last, with ``x~`` the logits with
the classes excluded by ``where`` at ``-inf``, ``d = x~ - max``, ``log_z = logsumexp(x~) -
max``, ``m`` the mask, ``w`` the class weights (1 without), ``e`` the smoothing, ``b = e / C``,
``v = m w``, ``V = sum_c v_c`` and ``S = sum_c v_c d_c``:

    sparse:  loss = a (log_z - d_l) + b (V log_z - S),       a = (1 - e) w_l m_l
    dense:   loss = (1 - e) (U log_z - sum_c u_c d_c) + b (V log_z - S),   u = m w y

which is ``_options``' ``sum_c w_c y~_c (log_z - d_c)`` with ``y~ = ((1 - e) y + e / C) m``
expanded (``y`` one-hot for sparse labels). Every term is a sum of non-negative parts, so
the loss stays relatively accurate. A zero ``a`` or ``v_c`` adds exactly 0, also against an
infinite ``log_z - d`` (a label on an excluded class, or of weight 0, at a ``-inf`` logit);
a NaN row stays NaN. ``ignore_index``: the row's label is replaced by 0, its loss by 0, and
its gradient is 0 (``_tensorflow_fused_kernels``): the logits are not rewritten, so a NaN
in an ignored row costs nothing and changes nothing (its second derivatives, through TF's
own ``exp`` gradient, are NaN). Row weights multiply the result.

In eager code on the CPU, a ``where`` mask writes no ``x~``: the pass runs on the logits as
given, from the maximum over *every* class, with its exponentials weighted by the mask
(``shifted``'s ``kept``: a select with the boolean mask, or its 0/1 floats where those are
needed anyway; matrix-vector sums for one ``[C]`` mask; ``log_z`` is then the log of the
kept sum, below 0 where the maximum is excluded far above the kept classes), which spares
writing ``x~`` and the ``exp`` of ``-inf`` (TF's ``exp`` is slower there): 1.3-1.5x ->
1.2-1.5x of the call
without options for ``where`` alone, 1.9-2.1x -> 1.65-1.95x with every option
(``benchmarks/options.py``); under a tape, forward and backward, 1.7-2.0x -> 1.4-1.65x. Its
value and gradients are the formula's wherever it is finite, except on the rows
``_numpy_fused`` calls suspect (a NaN or infinite logit, kept or not; cancellation or
underflow where the maximum is excluded; no class left), which :func:`_one_pass_holds` finds
by one flag read on the host: a batch with such a row runs again on ``x~``. On an
accelerator, and while tracing, ``x~`` as before.

Not handled here (the caller composes ``_options`` instead): logits or a mask of unknown
rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from xent import _options
from xent.backends import _tensorflow_checks as checks
from xent.backends import _tensorflow_fused_kernels as kernels
from xent.backends import _tensorflow_ops as ops
from xent.backends._tensorflow_options import TensorFlowArrayOps

_HALF = (tf.float16, tf.bfloat16)
_ARRAY_OPS = TensorFlowArrayOps()


class _Layout:
    """The logits as ``[rows, C]`` with the classes last (and back to the loss shape)."""

    def __init__(self, x: tf.Tensor, axis: int) -> None:
        self.rank = rank = x.shape.rank
        self.axis = axis % rank
        self.perm = None
        if self.axis != rank - 1:
            self.perm = [*range(self.axis), *range(self.axis + 1, rank), self.axis]
            x = tf.transpose(x, self.perm)
        self.full = x  # classes last, rank kept
        self.static_c = x.shape[-1]
        self.c = self.static_c if self.static_c is not None else tf.shape(x)[-1]
        self.rows = tf.reshape(x, [-1, self.c])
        self.loss_shape = x.shape[:-1] if x.shape[:-1].is_fully_defined() else tf.shape(x)[:-1]

    def mask(self, m: tf.Tensor) -> tf.Tensor:
        """A mask broadcastable to the logits as ``[rows or 1, C]``."""
        m = tf.reshape(m, [1] * (self.rank - m.shape.rank) + _dims(m))
        if self.perm is not None:
            m = tf.transpose(m, self.perm)
        if m.shape[:-1].is_fully_defined() and all(d == 1 for d in m.shape[:-1]):
            if m.shape[-1] is not None and m.shape[-1] == self.static_c:
                return tf.reshape(m, [1, -1])
        if m.shape != self.full.shape or not m.shape.is_fully_defined():
            m = tf.broadcast_to(m, tf.shape(self.full))
        return tf.reshape(m, [-1, self.c])

    def labels(self, y: tf.Tensor) -> tf.Tensor:
        """Dense labels of the logits' shape as ``[rows, C]``."""
        return tf.reshape(y if self.perm is None else tf.transpose(y, self.perm), [-1, self.c])

    def rows_of(self, t: tf.Tensor) -> tf.Tensor:
        return tf.reshape(t, [-1])

    def loss(self, per_row: tf.Tensor) -> tf.Tensor:
        return tf.reshape(per_row, self.loss_shape)


def _dims(t: tf.Tensor) -> list[Any]:
    """The shape of ``t``, static where known."""
    if t.shape.is_fully_defined():
        return t.shape.as_list()
    dynamic = tf.shape(t)
    return [d if d is not None else dynamic[i] for i, d in enumerate(t.shape.as_list())]


def _compute(x: Any) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    return tf.cast(x, tf.float32) if x.dtype in _HALF else x


def _returned(value: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return value if value.dtype == like.dtype.base_dtype else tf.cast(value, like.dtype)


def _handles(logits: tf.Tensor, opt: _options.Options, labels: Any = None) -> bool:
    """Known ranks, and no ``ForwardAccumulator`` tracking the inputs: TF's forward mode
    through a ``tf.custom_gradient`` differentiates its gradient function, NaN at a masked
    class (``0 * inf``); the composition's own ops have exact forward rules."""
    return (logits.shape.rank is not None
            and (opt.where is None or opt.where.shape.rank is not None)
            and not ops.forward_tracked(logits, labels))


def _smoothing(opt: _options.Options, layout: _Layout, dtype: tf.DType) -> Any:
    """``b = e / C``: a Python float when ``C`` is static."""
    if layout.static_c is not None:
        return opt.label_smoothing / layout.static_c
    return tf.cast(opt.label_smoothing, dtype) / tf.cast(layout.c, dtype)


def _kept(m: tf.Tensor | None, w: tf.Tensor | None, dtype: tf.DType) -> tf.Tensor | None:
    """The mask as 0/1 in ``dtype``, also 0 where the class weight is 0 (such a class adds
    nothing, and ``multiply_no_nan`` by the mask then keeps ``0 * -inf`` out of sums)."""
    if m is None:
        return None
    if w is not None:
        m = tf.logical_and(m, tf.not_equal(w, tf.zeros([], w.dtype)))
    return tf.cast(m, dtype)


def _zero_weights(w: tf.Tensor | None, host: bool) -> bool:
    """Whether a class weight may be 0 (read on the host where :func:`_host_checked`)."""
    return w is not None and not (host and bool(tf.reduce_all(tf.not_equal(w, 0.0))))


def _normaliser(m: tf.Tensor, kept: tf.Tensor | None, zero_weights: bool) -> tf.Tensor:
    """The ``where`` mask for the softmax's normalisation (``shifted``'s ``kept``): ``kept``
    itself where it is there and no class weight is 0 (a kept class of weight 0 is still
    normalised over), else the boolean mask (a select: no cast of it to floats)."""
    return kept if kept is not None and not zero_weights else m


def _host_checked(x: tf.Tensor) -> bool:
    """Eager on the CPU: :func:`_one_pass_holds` may read a flag on the host (on an
    accelerator that read would wait for the device, so the logits are masked instead)."""
    return tf.executing_eagerly() and "CPU" in x.device


def _one_pass_holds(loss: tf.Tensor, log_z: tf.Tensor, scale: Callable[[], Any],
                    layout: _Layout, ignored: tf.Tensor | None = None) -> bool:
    """Whether the pass over the logits as given (``shifted``'s ``kept``) is the formula on
    every row (eager: read on the host), as ``_numpy_fused``'s rows that are not suspect:
    no NaN (a NaN or infinite logit, kept or not), and where the maximum is excluded
    (``log_z < 0``) no cancellation over half (``loss >= -scale log_z``, ``scale`` the
    coefficient of ``log_z`` in ``loss``) and no kept sum near the smallest normal number
    (also: no class left). Else the caller masks the logits and runs the pass again; rows
    ``ignored`` do not count."""
    fine = tf.logical_not(tf.math.is_nan(loss)) & (log_z >= 0)
    if ignored is not None:
        fine = fine | ignored
    if bool(tf.reduce_all(fine)):
        return True
    info = np.finfo(log_z.dtype.as_numpy_dtype)
    floor = math.log(float(layout.static_c or 1) * float(info.tiny) / float(info.eps))
    fine = fine | ((loss >= -scale() * log_z) & (log_z >= floor))
    return bool(tf.reduce_all(fine))


def _kept_weight(w: tf.Tensor | None, kept: tf.Tensor | None, layout: _Layout,
                 dtype: tf.DType) -> Any:
    """``V = sum_c m_c w_c`` per row (a scalar without a mask)."""
    if kept is None:
        return tf.cast(layout.c, dtype) if w is None else tf.reduce_sum(w)
    return tf.reduce_sum(kept, 1) if w is None else ops.matvec(kept, w)


def sparse_rows(labels: Any, logits: Any, axis: int, opt: _options.Options) -> Any:
    """The per-row sparse loss with ``opt`` (before the reduction); None: not handled."""
    logits, labels = tf.convert_to_tensor(logits), tf.convert_to_tensor(labels)
    if not _handles(logits, opt, labels):
        return None
    labels, x = checks.sparse(tf.convert_to_tensor(labels), _compute(logits), axis)
    layout = _Layout(x, axis)
    x, dtype = layout.rows, layout.rows.dtype
    index = layout.rows_of(labels)
    if index.dtype not in (tf.int32, tf.int64):
        index = tf.cast(index, tf.int64)  # uint64 beyond int64 wraps negative: invalid
    ignored = None
    if opt.ignore_index is not None:
        ignored = _ARRAY_OPS.equal(index, opt.ignore_index)
        index = tf.where(ignored, tf.zeros([], index.dtype), index)
    valid = None
    if not tf.executing_eagerly():  # out of range while tracing: NaN (eager: checked)
        unsigned = tf.uint32 if index.dtype == tf.int32 else tf.uint64  # -1 wraps high
        valid = tf.cast(index, unsigned) < tf.cast(layout.c, unsigned)
        index = tf.where(valid, index, tf.zeros([], index.dtype))
    m = None if opt.where is None else layout.mask(opt.where)
    w = None if opt.class_weights is None else _compute(opt.class_weights)
    host = m is not None and _host_checked(x)
    zero_weights = _zero_weights(w, host)
    kept = _kept(m, w if zero_weights else None, dtype) if opt.smooths else None
    a = None  # the label's coefficient, 1 if None
    if opt.smooths:
        a = tf.constant(1.0 - opt.label_smoothing, dtype)
    if w is not None:
        w_l = tf.gather(w, index)
        a = w_l if a is None else a * w_l
    if m is not None:
        at_label = (tf.gather(m[0], index) if m.shape[0] == 1
                    else tf.gather(m, index, batch_dims=1))
        a = tf.where(at_label, tf.ones([], dtype) if a is None else a, tf.zeros([], dtype))
    b = _smoothing(opt, layout, dtype) if opt.smooths else 0.0
    spread = _kept_weight(w, kept, layout, dtype) if opt.smooths else None

    def row_loss(stats: list[tf.Tensor]) -> tf.Tensor:
        log_z, loss = stats[0], stats[0] - stats[1]
        if a is not None:  # a = 0 adds exactly 0 (also to log_z - d_l = inf); NaN rows stay
            loss = tf.math.multiply_no_nan(loss, a) + log_z * 0.0
        if spread is not None:
            loss = loss + b * (spread * log_z - stats[2])
        return loss

    loss = None
    if host:
        stats = kernels.sparse_stats(index, x, w, kept, opt.smooths,
                                     normaliser=_normaliser(m, kept, zero_weights))
        loss = row_loss(stats)
        def scale() -> Any:  # the coefficient of log_z (only read where log_z < 0)
            return (1.0 if a is None else a) + (0.0 if spread is None else b * spread)

        if not _one_pass_holds(loss, stats[0], scale, layout, ignored):
            loss = None
    if loss is None:
        if m is not None:
            x = tf.where(m, x, tf.constant(-float("inf"), dtype))
        loss = row_loss(kernels.sparse_stats(index, x, w, kept, opt.smooths))
    if ignored is not None:
        loss = tf.where(ignored, tf.zeros([], dtype), loss)
    if valid is not None:
        loss = tf.where(valid, loss, tf.constant(float("nan"), dtype))
    loss = _returned(layout.loss(loss), logits)
    return loss if opt.weights is None else loss * opt.weights


def dense_rows(labels: Any, logits: Any, axis: int, opt: _options.Options) -> Any:
    """The per-row dense loss with ``opt`` (before the reduction); None: not handled."""
    logits, labels = tf.convert_to_tensor(logits), tf.convert_to_tensor(labels)
    if not _handles(logits, opt, labels):
        return None
    y, x = checks.dense(_compute(labels), _compute(logits), axis)
    layout = _Layout(x, axis)
    x, dtype = layout.rows, layout.rows.dtype
    u = layout.labels(y)
    m = None if opt.where is None else layout.mask(opt.where)
    w = None if opt.class_weights is None else _compute(opt.class_weights)
    host = m is not None and _host_checked(x)
    zero_weights = _zero_weights(w, host)
    kept = _kept(m, w if zero_weights else None, dtype)
    if m is not None:
        u = tf.math.multiply_no_nan(u, kept)  # 0 at an excluded class, even for a NaN label
    if w is not None:
        u = u * w
    e = opt.label_smoothing if opt.smooths else 0.0
    b = _smoothing(opt, layout, dtype) if opt.smooths else 0.0
    spread = _kept_weight(w, kept, layout, dtype) if opt.smooths else None

    def row_loss(stats: list[tf.Tensor]) -> tf.Tensor:
        main, log_z, s = stats
        return main if spread is None else (1.0 - e) * main + b * (spread * log_z - s)

    loss = None
    if host:
        normaliser = _normaliser(m, kept, zero_weights)
        stats = kernels.dense_stats(u, x, w, kept, normaliser=normaliser, smooth=opt.smooths)
        loss = row_loss(stats)

        def scale() -> Any:
            total = tf.reduce_sum(u, 1)
            return total if spread is None else (1.0 - e) * total + b * spread

        if not _one_pass_holds(loss, stats[1], scale, layout):
            loss = None
    if loss is None:
        if m is not None:
            x = tf.where(m, x, tf.constant(-float("inf"), dtype))
        loss = (ops.dense(u, x, 1) if spread is None
                else row_loss(kernels.dense_stats(u, x, w, kept)))
    loss = _returned(layout.loss(loss), logits)
    return loss if opt.weights is None else loss * opt.weights
