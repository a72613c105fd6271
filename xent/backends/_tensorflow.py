"""The TensorFlow backend: TF2 eager, inside ``tf.function``, and TF1 graphs + ``Session``.

Every method builds ordinary TF ops, so the same code returns eager tensors in eager mode and
graph tensors while tracing (``tf.function``, ``tf.compat.v1`` graphs, or a process that
called ``tf.compat.v1.disable_eager_execution()``). Nothing reads a symbolic value: the API's
checks use static shapes (``None`` for unknown dimensions), and a sparse label out of range
gives NaN while tracing. The math, its accuracy and its gradients are in
``_tensorflow_ops``; the conformance modes in ``_tensorflow_modes``. float16 and bfloat16
are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from xent.backends import _tensorflow_modes
from xent.backends import _tensorflow_ops as ops
from xent.backends._base import Backend
from xent.backends._tensorflow_options import TensorFlowArrayOps

_HALF = (tf.float16, tf.bfloat16)

try:  # autograph would rewrite xent's dispatch and validation on every trace, for nothing:
    # xent has no control flow on tensor values. Private; TF lists keras the same way.
    from tensorflow.python.autograph.core import config as _autograph_config

    if not any(getattr(r, "_prefix", None) == "xent"
               for r in _autograph_config.CONVERSION_RULES):
        _autograph_config.CONVERSION_RULES = (
            _autograph_config.DoNotConvert("xent"), *_autograph_config.CONVERSION_RULES
        )
except (ImportError, AttributeError):  # a TF that moved it: xent is converted, harmlessly
    pass


def _compute(x: Any) -> tf.Tensor:
    """``x`` as a tensor in the dtype the math runs in (half precisions in float32)."""
    x = tf.convert_to_tensor(x)  # a tf.Variable becomes a (differentiable) read here
    return tf.cast(x, tf.float32) if x.dtype in _HALF else x


def _returned(value: tf.Tensor, like: Any) -> tf.Tensor:
    return value if value.dtype == like.dtype.base_dtype else tf.cast(value, like.dtype)


class TensorFlowBackend(TensorFlowArrayOps, Backend):
    name = "tensorflow"
    module = "tensorflow"
    modes = ("eager", "function", "graph")
    tracing_modes = ("function", "graph")
    has_autodiff = True
    relative_accuracy = True  # log1p of the sum without the leading term, as NumPy
    dtypes = ("float16", "bfloat16", "float32", "float64")

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        # tf.Tensor covers EagerTensor and graph/symbolic tensors; a ResourceVariable is no
        # tf.Tensor subclass
        return isinstance(x, (tf.Tensor, tf.Variable))

    def shape(self, x: Any) -> tuple[int | None, ...]:
        shape = x.shape
        if shape.rank is None:
            raise ValueError(
                f"tensorflow: {getattr(x, 'name', 'a tensor')} has unknown rank; xent needs "
                "the rank statically (e.g. placeholder(tf.float32, [None, num_classes]))"
            )
        return tuple(shape.as_list())

    def dtype_name(self, x: Any) -> str:
        return x.dtype.base_dtype.name  # TF names match NumPy's

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> Any:
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(tf.as_dtype(dtype).as_numpy_dtype, copy=False)
        if like is None or tf.is_symbolic_tensor(like):  # graph: a constant in the current one
            return tf.constant(array)
        with tf.device(like.device):
            return tf.constant(array)

    def cast(self, x: Any, dtype: str) -> Any:
        target = tf.as_dtype(dtype)
        return x if x.dtype == target else tf.cast(x, target)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

    def stop_gradient(self, x: Any) -> Any:
        return tf.stop_gradient(x)

    def first_out_of_range(self, labels: Any, num_classes: int) -> int | None:
        if not tf.executing_eagerly() or tf.is_symbolic_tensor(labels):
            return None  # tracing: the values do not exist yet; such a row's loss is NaN
        values = labels.numpy()  # labels are small (one per row); on CPU this is a view
        bad = (values < 0) | (values >= num_classes)
        return int(values[bad][0]) if bad.any() else None

    def reduce(self, loss: Any, reduction: str) -> Any:
        total = _compute(loss)
        total = tf.reduce_sum(total) if reduction == "sum" else tf.reduce_mean(total)
        return _returned(total, loss)

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: Any, axis: int) -> Any:
        x = _compute(logits)
        p = tf.nn.softmax(x, axis)
        # TF's softmax leaves the other classes of a NaN or +inf row finite; make it all NaN
        undefined = tf.stop_gradient(tf.reduce_sum(p, axis, keepdims=True) * 0)
        return _returned(p + undefined, logits)

    def log_softmax(self, logits: Any, axis: int) -> Any:
        return _returned(ops.log_softmax(_compute(logits), axis), logits)

    def softmax_cross_entropy_with_logits(self, labels: Any, logits: Any, axis: int) -> Any:
        return _returned(ops.dense(_compute(labels), _compute(logits), axis), logits)

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: Any, logits: Any, axis: int
    ) -> Any:
        x, labels = _compute(logits), tf.convert_to_tensor(labels)
        if labels.dtype not in (tf.int32, tf.int64):
            labels = tf.cast(labels, tf.int64)  # uint64 beyond int64 wraps negative: invalid
        rank = x.shape.rank
        if axis != rank - 1:  # classes last, as the ops take them
            x = tf.transpose(x, [*range(axis), *range(axis + 1, rank), axis])
        num_classes = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
        valid = None
        if not tf.executing_eagerly():  # eager labels were checked by the API, with a message
            # a bad index makes gather raise, also while tracing; the contract wants NaN:
            # compute with label 0 and replace
            unsigned = tf.uint32 if labels.dtype == tf.int32 else tf.uint64  # -1 wraps high
            valid = tf.cast(labels, unsigned) < tf.cast(num_classes, unsigned)
            labels = tf.where(valid, labels, 0)
        if rank == 2:
            loss = ops.sparse(labels, x)
        else:  # the ops take [rows, C]; reshapes are free
            loss = ops.sparse(tf.reshape(labels, [-1]), tf.reshape(x, [-1, num_classes]))
            loss = tf.reshape(loss, tf.shape(labels))
        if valid is not None:
            loss = tf.where(valid, loss, tf.constant(np.nan, loss.dtype))
        return _returned(loss, logits)

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> Any:
        return _tensorflow_modes.run(mode, fn, *args)

    def value_and_grad(
        self, mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return _tensorflow_modes.value_and_grad(mode, fn, labels, logits)
