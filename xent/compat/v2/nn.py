"""``tf.compat.v2.nn`` (TF2 ``tf.nn``) twins: TF2 signatures and semantics on every backend.

>>> from xent.compat.v2 import nn
>>> nn.softmax_cross_entropy_with_logits([[0.0, 1.0, 0.0]], [[0.5, 1.5, 0.1]]).round(7)
array([0.4790107])
"""

from __future__ import annotations

from typing import Any

import xent
from xent.compat._args import axis_or_dim

__all__ = [
    "log_softmax",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
]


def softmax_cross_entropy_with_logits(
    labels: Any, logits: Any, axis: int = -1, name: str | None = None
) -> Any:
    """TF2's cross-entropy: ``(labels, logits)`` order, gradient into labels."""
    return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis)


def sparse_softmax_cross_entropy_with_logits(
    labels: Any, logits: Any, name: str | None = None
) -> Any:
    """TF2's sparse cross-entropy over the last axis."""
    return xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def softmax(logits: Any, axis: int | None = None, name: str | None = None) -> Any:
    """TF's softmax: ``exp(logits - logsumexp(logits))`` along ``axis`` (default: last)."""
    return xent.softmax(logits, axis_or_dim(axis, None))


def log_softmax(logits: Any, axis: int | None = None, name: str | None = None) -> Any:
    """TF's log_softmax: ``logits - logsumexp(logits)`` along ``axis`` (default: last)."""
    return xent.log_softmax(logits, axis_or_dim(axis, None))
