"""The array operations loss options are composed from (``xent._options``), in TensorFlow.

Ordinary TF ops: the same code builds eager tensors, ``tf.function`` graphs and TF1 graphs.
Python scalars take the dtype of the other operand (``tf.where`` would make them float32
or int32)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

_HALF = (tf.float16, tf.bfloat16)


def _compute(dtype: tf.DType) -> tf.DType:
    return tf.float32 if dtype in _HALF else dtype


def _scalar_like(value: Any, other: Any) -> Any:
    """``value`` as a tensor of ``other``'s dtype when it is a Python scalar."""
    if isinstance(value, (bool, int, float)):
        return tf.constant(value, tf.convert_to_tensor(other).dtype)
    return value


def _holds(dtype: tf.DType, value: int) -> bool:
    info = np.iinfo(dtype.as_numpy_dtype)
    return bool(info.min <= value <= info.max)


def _index(x: Any) -> tf.Tensor:
    """Integer labels as int32 or int64 (the index dtypes TF's ops take)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype in (tf.int32, tf.int64) else tf.cast(x, tf.int64)


class TensorFlowArrayOps:
    """See ``xent.backends.Backend`` for what each operation means."""

    def where(self, condition: Any, x: Any, y: Any) -> tf.Tensor:
        return tf.where(condition, _scalar_like(x, y), _scalar_like(y, x))

    def equal(self, x: Any, value: int) -> tf.Tensor:
        x = tf.convert_to_tensor(x)
        if not _holds(x.dtype, value):  # a cast would wrap it (-100 is 156 in uint8)
            return tf.zeros_like(x, tf.bool)
        return tf.equal(x, tf.constant(value, x.dtype))

    def not_equal(self, x: Any, value: int) -> tf.Tensor:
        return tf.logical_not(self.equal(x, value))

    def expand_dims(self, x: Any, axis: int) -> tf.Tensor:
        return tf.expand_dims(x, axis)

    def in_range(self, index: Any, num_classes: Any) -> tf.Tensor:
        index = _index(index)
        return (index >= 0) & (index < tf.cast(num_classes, index.dtype))

    def one_hot(self, index: Any, like: Any, axis: int) -> tf.Tensor:
        like = tf.convert_to_tensor(like)
        depth = like.shape[axis] if like.shape[axis] is not None else tf.shape(like)[axis]
        return tf.one_hot(_index(index), depth, axis=axis, dtype=like.dtype)

    def take(self, table: Any, index: Any) -> tf.Tensor:
        index = _index(index)  # gather raises on an index out of range, even in a graph
        last = tf.cast(tf.shape(table)[0] - 1, index.dtype)
        return tf.gather(table, tf.clip_by_value(index, tf.zeros_like(last), last))

    def along(self, vector: Any, axis: int, like: Any) -> tf.Tensor:
        rank = like.shape.rank
        if rank is not None:
            return tf.reshape(vector, [-1 if d == axis % rank else 1 for d in range(rank)])
        rank = tf.rank(like)  # unknown while tracing: [1, ..., -1 at axis, ..., 1] at run time
        shape = tf.tensor_scatter_nd_update(tf.ones([rank], tf.int32), [[axis % rank]], [-1])
        return tf.reshape(vector, shape)

    def row_dot(self, labels: Any, vector: Any, axis: int) -> tf.Tensor:
        labels = tf.convert_to_tensor(labels)
        dtype = _compute(labels.dtype)
        weighted = tf.cast(labels, dtype) * tf.cast(self.along(vector, axis, labels), dtype)
        return tf.cast(tf.reduce_sum(weighted, axis), labels.dtype)

    def broadcast_like(self, x: Any, like: Any) -> tf.Tensor:
        return tf.broadcast_to(x, tf.shape(like))

    def total(self, x: Any) -> tf.Tensor:
        x = tf.convert_to_tensor(x)
        return tf.reduce_sum(tf.cast(x, _compute(x.dtype)))

    def count(self, mask: Any, like: Any) -> tf.Tensor:
        return tf.reduce_sum(tf.cast(mask, _compute(tf.convert_to_tensor(like).dtype)))

    def divide(self, total: Any, denominator: Any, like: Any) -> tf.Tensor:
        return tf.cast(tf.math.divide(total, denominator), tf.convert_to_tensor(like).dtype)

    def class_count(self, logits: Any, axis: int, dtype: str | None) -> tf.Tensor:
        count = tf.shape(logits)[axis]
        return count if dtype is None else tf.cast(count, tf.as_dtype(dtype))
