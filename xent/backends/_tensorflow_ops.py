"""The TensorFlow math: softmax cross-entropy from TF's reductions and elementwise ops.

With ``m`` the row maximum, ``d = x - m``, ``e = exp(d)`` and ``rest`` the sum of ``e`` over
every class but one at the maximum (the NumPy reference's formulation),
``log_z = logsumexp(x) - m = log1p(rest)`` and

    loss = sum(labels) * log_z - sum_c labels_c * d_c

is a sum of two non-negative terms: accurate to a few eps *relative*, also for confident rows
whose loss is far below eps (TF's fused xent and log_softmax kernels return 0 there, which
is why they are not used; the formulation costs about what TF's fused xent kernel does).
``multiply_no_nan`` makes a label-0 class add exactly 0 where ``d`` is ``-inf`` (a masked
class; TF's fused kernel computes ``0 * -inf = NaN``).

The gradients (``tf.custom_gradient``) reuse the forward's ``e``:
``d/dlogits = softmax * sum(labels) - labels`` (TF's kernel gives ``softmax - labels``, wrong
for unnormalised labels) and ``d/dlabels = log_z - d``, ``+inf`` at a masked class.

Under TF's transforms: the ops of a custom gradient's forward are recorded as well, so
``tf.autodiff.ForwardAccumulator`` differentiates the forward formula itself and nested
tapes differentiate the gradient's own ops (Hessians); every op used has an XLA kernel and a
``tf.vectorized_map`` rule. Negative axes work without a known rank.

Everything here works on any floating dtype; the caller runs float16/bfloat16 in float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf

try:  # private, read-only: whether a GradientTape records this eager call, and what it watches
    from tensorflow.python.eager import record as _record

    def taped() -> bool:
        """False only in eager execution with no tape active: no gradient can be asked for."""
        return not tf.executing_eagerly() or bool(_record.could_possibly_record())

    def watched(x: tf.Tensor) -> bool:
        """Whether a gradient of ``x`` may be asked for (always, while tracing)."""
        return not tf.executing_eagerly() or bool(_record.should_record_backprop([x]))

except ImportError:  # a TF that moved it: always take the differentiable path

    def taped() -> bool:
        return True

    def watched(x: tf.Tensor) -> bool:
        return True


try:  # private, read-only: the tangents a ForwardAccumulator holds for these tensors
    from tensorflow.python.eager import forwardprop_util as _forwardprop

    def forward_tracked(*tensors: Any) -> bool:
        """Whether a ``ForwardAccumulator`` active here tracks any of ``tensors``."""
        return bool(_forwardprop.pack_tangents([t for t in tensors if t is not None]).tangents)

except ImportError:  # a TF that moved it: assume one may

    def forward_tracked(*tensors: Any) -> bool:
        return True


def matvec(a: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """``a @ v`` for ``[rows, C]`` ``a`` and ``[C]`` ``v``: ``tf.linalg.matvec`` in eager code;
    while tracing, a ``matmul`` reshaped, because ``tf.vectorized_map`` of ``matvec`` fails
    on an empty batch (its ``Squeeze`` rule meets the 0 rows: InvalidArgumentError)."""
    if tf.executing_eagerly():
        return tf.linalg.matvec(a, v)
    return tf.reshape(tf.linalg.matmul(a, tf.expand_dims(v, 1)), tf.shape(a)[:-1])


def shifted(x: tf.Tensor, axis: int, kept: tf.Tensor | None = None, exps: bool = True
            ) -> tuple[tf.Tensor, Any, tf.Tensor, tf.Tensor]:
    """``(d, e, total, log_z)``: ``d = x - max(x)``, ``e = exp(d)``, and per row
    ``total = sum(e)`` and ``log_z = logsumexp(x) - max(x)``, accurate when ``log_z << 1``.

    A row with a NaN logit (``max`` is NaN), a ``+inf`` logit (its ``d`` is NaN) or every
    logit ``-inf`` (``d = -inf - -inf``) has NaN ``total`` and ``log_z``.

    ``kept``: a ``where`` mask, boolean or as 0/1 floats (broadcastable to ``x``): ``e =
    kept exp(d)``, so that ``total`` and ``log_z`` are those of the kept classes, still from
    the maximum over *every* class. Where that maximum is excluded, ``log_z = log(total)``,
    which may be below 0 (the caller checks those rows for cancellation and underflow;
    ``-inf`` for a row with no class left). A NaN or infinite logit, kept or not, makes the
    row NaN. A mask shared by every row (``[1, C]``, classes on ``axis`` 1) weighs the sums
    as matrix-vector products (no product of the size of ``x``), and ``e`` is masked only
    where the caller reads it (``exps``; else None)."""
    d = x - tf.reduce_max(x, axis, keepdims=True)
    e = tf.exp(d)
    if kept is not None and axis == 1 and kept.shape.rank == 2 and kept.shape[0] == 1:
        k = tf.cast(kept[0], e.dtype)
        total = matvec(e, k)
        below = matvec(tf.where(d < 0, e, 0.0), k)  # all classes but the maximum
        e = (e * k) if exps else None
    else:
        if kept is not None:  # a select on a boolean mask: faster than its cast and a product
            e = tf.where(kept, e, 0.0) if kept.dtype == tf.bool else e * kept
        total = tf.reduce_sum(e, axis)
        below = tf.reduce_sum(tf.where(d < 0, e, 0.0), axis)  # all classes but the maximum
    # rest = total - 1 without rounding 1 + below: add 1 per further class tied at the maximum
    ties = tf.round(total - below)
    log_z = tf.math.log1p(below + (ties - 1))
    if kept is not None:  # no kept class at the maximum: log_z = log(total) < 0 may be
        log_z = tf.where(ties > 0, log_z, tf.math.log(total))
    return d, e, total, log_z


def log_softmax(x: tf.Tensor, axis: int) -> tf.Tensor:
    """``d - log_z`` (not ``tf.nn.log_softmax``: it rounds a confident maximum's to 0)."""
    d, _, _, log_z = shifted(x, axis)
    return d - tf.expand_dims(log_z, axis)


def _dense_loss(labels: tf.Tensor, d: tf.Tensor, weight: tf.Tensor, log_z: tf.Tensor,
                axis: int) -> tf.Tensor:
    # multiply_no_nan: a class with label 0 adds exactly 0, also where d is -inf
    return weight * log_z - tf.reduce_sum(tf.math.multiply_no_nan(d, labels), axis)


def dense(labels: tf.Tensor, logits: tf.Tensor, axis: int) -> tf.Tensor:
    """The dense loss; differentiable unless no tape can record this (eager) call."""
    if taped():
        return _dense_xent(axis, watched(labels))(labels, logits)
    d, _, _, log_z = shifted(logits, axis)
    return _dense_loss(labels, d, tf.reduce_sum(labels, axis), log_z, axis)


@functools.cache
def _dense_xent(axis: int, label_gradient: bool) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The dense loss along ``axis`` with the contract's gradients (cached per variant)."""

    @tf.custom_gradient
    def dense_xent(labels: tf.Tensor, logits: tf.Tensor) -> Any:
        d, e, total, log_z = shifted(logits, axis)
        weight = tf.reduce_sum(labels, axis)

        def grad(upstream: tf.Tensor) -> tuple[tf.Tensor | None, tf.Tensor]:
            g = tf.expand_dims(upstream, axis)
            # d/dlogits = softmax * sum(labels) - labels: 0 at a masked class
            dlogits = e * tf.expand_dims(upstream * weight / total, axis) - labels * g
            if not label_gradient:  # eager, labels not watched: skip a full-size product
                return None, dlogits
            # d/dlabels = logsumexp - logits = log_z - d: +inf at a masked class, its true
            # value; no_nan: 0 where no gradient comes in (an unused output, a row weighed 0)
            return tf.math.multiply_no_nan(tf.expand_dims(log_z, axis) - d, g), dlogits

        return _dense_loss(labels, d, weight, log_z, axis), grad

    return dense_xent


def sparse(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The sparse loss on ``[rows, C]`` logits and ``[rows]`` in-range labels."""
    if taped():
        return _sparse_xent(labels, logits)
    d, _, _, log_z = shifted(logits, 1)
    return log_z - tf.gather(d, labels, batch_dims=1)


@tf.custom_gradient
def _sparse_xent(labels: tf.Tensor, logits: tf.Tensor) -> Any:
    """``log_z - d[label]``, with d/dlogits = softmax - one_hot(labels)."""
    d, e, total, log_z = shifted(logits, 1)

    def grad(upstream: tf.Tensor) -> tuple[None, tf.Tensor]:
        scaled = e * tf.expand_dims(upstream / total, 1)
        at_label = tf.gather(scaled, labels, batch_dims=1) - upstream
        # an update, not tensor_scatter_nd_sub: tf.vectorized_map has no rule for the latter;
        # int32 indices: its rule for the update concatenates them with int32 loop indices
        rows = tf.range(tf.shape(labels)[0])
        at_labels = tf.stack([rows, tf.cast(labels, tf.int32)], 1)
        return None, tf.tensor_scatter_nd_update(scaled, at_labels, at_label)

    return log_z - tf.gather(d, labels, batch_dims=1), grad


def softmax(x: tf.Tensor, axis: int) -> tf.Tensor:
    """``exp(x - logsumexp(x))`` by TF's fused kernel; a row with a NaN or ``+inf`` logit, or
    with every logit ``-inf``, is all NaN."""
    if x.shape.rank is not None or axis == -1:
        p = tf.nn.softmax(x, axis)
    else:  # tf.nn.softmax needs the rank for another axis: move the classes last and back
        perm = _classes_last_permutation(x, axis)
        p = tf.transpose(tf.nn.softmax(tf.transpose(x, perm)), tf.math.invert_permutation(perm))
    # TF's softmax has left the other classes of a NaN or +inf row finite: make it all NaN
    return p + tf.stop_gradient(tf.reduce_sum(p, axis, keepdims=True) * 0)


def sparse_along(labels: tf.Tensor, x: tf.Tensor, axis: int) -> tf.Tensor:
    """The sparse loss along any ``axis`` (negative where the rank is unknown): ``[..., C,
    ...]`` logits and integer labels of their shape without ``axis``. A label outside
    ``[0, C)`` gives NaN while tracing; eager labels were checked by the API, with a
    message."""
    if labels.dtype not in (tf.int32, tf.int64):
        labels = tf.cast(labels, tf.int64)  # uint64 beyond int64 wraps negative: invalid
    rank = x.shape.rank
    if not (axis == -1 or axis == (rank or 0) - 1):  # the ops take classes last
        x = tf.transpose(x, _classes_last_permutation(x, axis))
    num_classes = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    valid = None
    if not tf.executing_eagerly():
        # a bad index makes gather raise, also while tracing; the contract wants NaN:
        # compute with label 0 and replace
        unsigned = tf.uint32 if labels.dtype == tf.int32 else tf.uint64  # -1 wraps high
        valid = tf.cast(labels, unsigned) < tf.cast(num_classes, unsigned)
        labels = tf.where(valid, labels, 0)
    if rank == 2:
        loss = sparse(labels, x)
    else:  # the ops take [rows, C]; reshapes are free
        loss = sparse(tf.reshape(labels, [-1]), tf.reshape(x, [-1, num_classes]))
        loss = tf.reshape(loss, tf.shape(labels))
    if valid is not None:
        loss = tf.where(valid, loss, tf.constant(float("nan"), loss.dtype))
    return loss


def _classes_last_permutation(x: tf.Tensor, axis: int) -> Any:
    """The permutation that moves ``axis`` of ``x`` last, the others keeping their order
    (static when the rank is known)."""
    rank = x.shape.rank
    if rank is not None:
        axis %= rank
        return [*range(axis), *range(axis + 1, rank), axis]
    rank = tf.rank(x)
    axis = tf.math.floormod(axis, rank)
    return tf.concat([tf.range(axis), tf.range(axis + 1, rank), [axis]], 0)
