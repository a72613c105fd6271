"""Checks that wait for the graph to run: what a traced shape leaves unknown.

The API checks every shape it can see (``xent._validate``). A TF graph tensor may have an
unknown rank (``placeholder(tf.float32)``, ``tf.TensorSpec(None)``) or unknown dimensions
(``[None, None]``); what those hide is checked here, when the graph runs, with the same
message as the static check, filled in with the run-time values:

- logits of rank 0, an axis out of range (unknown rank only);
- a class axis of size 0;
- labels whose shape is not the logits' shape (dense) or the logits' shape without the class
  axis (sparse).

A failed check raises ``tf.errors.InvalidArgumentError`` (TF's run-time error for bad
input; ``ValueError`` cannot be raised from a running graph) whose message contains
the text of the static check. The returned tensors are gated on the check (a control
dependency), so nothing computes on input that failed it. In eager execution every shape is
known and nothing is added; nor when the static shapes already say everything. XLA compiles
``Assert`` to nothing: under ``jit_compile=True`` these run-time checks do not happen.
"""

from __future__ import annotations

import string
from typing import Any

import tensorflow as tf

from xent import _validate


def logits(x: tf.Tensor, axis: int) -> tf.Tensor:
    """``x`` gated on the run-time checks of its rank, ``axis`` and class-axis size."""
    if tf.executing_eagerly() or _static(x.shape, axis):
        return x
    ok, message, _ = _logits_check(x, axis)
    return _gated(ok, message, x)[0]


def dense(labels: tf.Tensor, x: tf.Tensor, axis: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``(labels, x)`` gated on the checks of :func:`logits` and on labels of x's shape."""
    if tf.executing_eagerly() or (_static(x.shape, axis) and labels.shape == x.shape
                                  and x.shape.is_fully_defined()):
        return labels, x
    ok, message, _ = _logits_check(x, axis)
    same, mismatch = _same_shape(labels, tf.shape(x), _validate.DENSE_LABELS_SHAPE,
                                 logits_shape=_fmt(tf.shape(x)))
    return _gated(ok & same, tf.where(ok, mismatch, message), labels, x)


def sparse(labels: tf.Tensor, x: tf.Tensor, axis: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``(labels, x)`` gated on the checks of :func:`logits` and on labels of x's shape
    without the class axis."""
    if tf.executing_eagerly() or (_static(x.shape, axis) and labels.shape.is_fully_defined()
                                  and x.shape.is_fully_defined()):
        return labels, x
    ok, message, class_axis = _logits_check(x, axis)
    shape = tf.shape(x)
    expected = tf.concat([shape[:class_axis], shape[class_axis + 1:]], 0)
    same, mismatch = _same_shape(labels, expected, _validate.SPARSE_LABELS_SHAPE,
                                 expected=_fmt(expected), logits_shape=_fmt(shape),
                                 axis=class_axis)
    return _gated(ok & same, tf.where(ok, mismatch, message), labels, x)


def _static(shape: tf.TensorShape, axis: int) -> bool:
    """Whether the API's static checks covered everything (known rank and class size)."""
    return shape.rank is not None and shape[axis] is not None


def _logits_check(x: tf.Tensor, axis: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(ok, message, class_axis)``: whether the logits pass, the first failed check's
    message, and the class axis as a non-negative scalar (0 where the axis is invalid)."""
    shape = tf.shape(x)
    rank = tf.size(shape)
    if x.shape.rank is not None:  # the API checked rank and axis: only the size is unknown
        class_axis = tf.constant(axis)
        size_ok = shape[axis] > 0
        return size_ok, _message(_validate.EMPTY_CLASS_AXIS, axis=class_axis,
                                 shape=_fmt(shape)), class_axis
    in_range = (rank > 0) & (-rank <= axis) & (axis < rank)
    class_axis = tf.where(in_range, tf.math.floormod(axis, tf.maximum(rank, 1)), 0)
    size_ok = tf.concat([shape, [1]], 0)[class_axis] > 0  # the [1]: a scalar has no dims
    message = tf.where(
        tf.equal(rank, 0),
        _validate.SCALAR_LOGITS,
        tf.where(in_range,
                 _message(_validate.EMPTY_CLASS_AXIS, axis=class_axis, shape=_fmt(shape)),
                 _message(_validate.AXIS_OUT_OF_RANGE, axis=tf.constant(axis), rank=rank,
                          low=-rank, high=rank - 1)))
    return in_range & size_ok, message, class_axis


def _same_shape(labels: tf.Tensor, want: tf.Tensor, template: str,
                **fields: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Whether ``labels`` has shape ``want`` (any ranks), and the mismatch message."""
    shape = tf.shape(labels, out_type=want.dtype)
    # equal sizes and [a, b] == [b, a] elementwise: a == b, with no op failing on ranks.
    # tf.equal, never ==: in a TF1 graph `==` compares tensors by identity (a Python bool)
    same = tf.equal(tf.size(shape), tf.size(want)) & tf.reduce_all(
        tf.equal(tf.concat([shape, want], 0), tf.concat([want, shape], 0)))
    return same, _message(template, shape=_fmt(shape), **fields)


def _gated(ok: tf.Tensor, message: tf.Tensor, *tensors: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """``tensors``, computed only after ``Assert(ok, [message])`` passed."""
    check = tf.debugging.Assert(ok, [message], name="xent_check")
    with tf.control_dependencies([check]):
        return tuple(tf.identity(t) for t in tensors)


def _fmt(shape: tf.Tensor) -> tf.Tensor:
    """A shape vector as ``_validate`` writes it: ``(2, 3)``, ``(3,)``, ``()``."""
    dims = tf.strings.reduce_join(tf.strings.as_string(shape), separator=", ")
    return tf.strings.join(["(", dims, tf.where(tf.equal(tf.size(shape), 1), ",)", ")")])


def _message(template: str, **fields: Any) -> tf.Tensor:
    """``template.format(**fields)`` as a string tensor, the fields being tensors."""
    parts: list[Any] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            value = tf.convert_to_tensor(fields[name])
            parts.append(value if value.dtype == tf.string else tf.strings.as_string(value))
    return tf.strings.join(parts)
