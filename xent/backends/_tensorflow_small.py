"""Tiny eager losses on the host: a few dozen elements in plain Python floats.

A 2x3 loss built from TF ops is a dozen eager op dispatches (~10-50 us each on this
project's machine), against one for TF's fused kernel. For eager CPU tensors with no tape or
``ForwardAccumulator`` that could record the call, the values are already in host memory:
``Tensor.numpy()`` is a view of them (no copy, no device sync), the NumPy backend's tiny
kernels (``_numpy_small``: the same relatively accurate formulation, in float64) compute the
loss, and one ``tf.constant`` returns it, on the CPU, in the logits' dtype.

Taken only when all of these hold, else the TF ops run (same values, to rounding):

- eager execution, a concrete CPU tensor, and no GPU or TPU in the process (where TF would
  place the ops of the regular path on an accelerator, the result would live there);
- no tape or accumulator active (``_tensorflow_ops.taped()``): no gradient can be asked for;
- float32 or float64 logits (float16/bfloat16 compute in float32 on the TF path), at most
  ``MAX_ELEMENTS`` of them, classes on the last axis.
"""

from __future__ import annotations

import functools
from typing import Any

import tensorflow as tf

from xent.backends import _numpy_small
from xent.backends._tensorflow_ops import taped

MAX_ELEMENTS = _numpy_small.MAX_ELEMENTS
_DTYPES = (tf.float32, tf.float64)
try:  # the type of concrete eager tensors (private name; ``tf.Tensor`` covers graph tensors)
    from tensorflow.python.framework.ops import EagerTensor

    Eager: Any = EagerTensor
except ImportError:  # a TF that moved it: never take this path
    Eager = None


@functools.cache
def _host_only() -> bool:
    """Whether this process has no accelerator (asked once: devices are fixed at start)."""
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def fits(logits: Any, axis: int) -> bool:
    """Whether the loss on ``logits`` along ``axis`` may be computed here."""
    if type(logits) is not Eager or logits.dtype not in _DTYPES:
        return False
    shape = logits.shape
    count = shape.num_elements()
    return (count is not None and 0 < count <= MAX_ELEMENTS and axis == shape.rank - 1
            and not taped() and logits.device.endswith("CPU:0") and _host_only())


def sparse(labels: Any, logits: Any) -> tf.Tensor:
    """The sparse loss of in-range ``labels`` (checked by the API in eager execution)."""
    return tf.constant(_numpy_small.sparse_loss(labels.numpy(), logits.numpy()))


def dense(labels: Any, logits: Any) -> tf.Tensor:
    """The dense loss; ``labels`` of the logits' shape and dtype."""
    return tf.constant(_numpy_small.dense_loss(labels.numpy(), logits.numpy()))
