"""``tf.compat.v1.nn`` twins: TF1 signatures and TF1 semantics on every backend.

The difference that matters: :func:`softmax_cross_entropy_with_logits` here stops the
gradient into ``labels`` (TF1 did), :func:`softmax_cross_entropy_with_logits_v2` lets it
flow (TF2 does).

>>> from xent.compat.v1 import nn
>>> nn.softmax_cross_entropy_with_logits(
...     labels=[[0.0, 1.0, 0.0]], logits=[[0.5, 1.5, 0.1]]).round(7)
array([0.4790107])
"""

from __future__ import annotations

from typing import Any

import xent
from xent import _dispatch
from xent.compat._args import axis_or_dim, named_only

__all__ = [
    "log_softmax",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits",
]


def _without_label_gradient(labels: Any, logits: Any) -> Any:
    _dispatch.resolve(logits, labels, None)  # mixed frameworks: the usual TypeError
    owner = _dispatch.owner(labels)  # the logits' framework, or one it accepts (DTensor: torch)
    return labels if owner is None else owner.stop_gradient(labels)


def softmax_cross_entropy_with_logits(
    _sentinel: Any = None,
    labels: Any = None,
    logits: Any = None,
    dim: int = -1,
    name: str | None = None,
    axis: int | None = None,
) -> Any:
    """TF1's cross-entropy: named arguments only, ``dim``, no gradient into labels."""
    named_only("softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    return xent.softmax_cross_entropy_with_logits(
        labels=_without_label_gradient(labels, logits), logits=logits,
        axis=axis_or_dim(axis, None if dim == -1 else dim),
    )


def softmax_cross_entropy_with_logits_v2(
    labels: Any, logits: Any, axis: int | None = None, name: str | None = None,
    dim: int | None = None,
) -> Any:
    """TF1.5+'s ``_v2``: TF2 semantics (gradient into labels) under the TF1 name."""
    return xent.softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, axis=axis_or_dim(axis, dim)
    )


def sparse_softmax_cross_entropy_with_logits(
    _sentinel: Any = None, labels: Any = None, logits: Any = None, name: str | None = None
) -> Any:
    """TF1's sparse cross-entropy over the last axis: named arguments only."""
    named_only("sparse_softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    return xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def softmax(logits: Any, axis: int | None = None, name: str | None = None,
            dim: int | None = None) -> Any:
    """TF1's softmax: ``exp(logits - logsumexp(logits))`` along ``axis`` (or ``dim``, its
    TF1 name; default: the last axis)."""
    return xent.softmax(logits, axis_or_dim(axis, dim))


def log_softmax(logits: Any, axis: int | None = None, name: str | None = None,
                dim: int | None = None) -> Any:
    """TF1's log_softmax: ``logits - logsumexp(logits)`` along ``axis`` (or ``dim``, its
    TF1 name; default: the last axis)."""
    return xent.log_softmax(logits, axis_or_dim(axis, dim))
