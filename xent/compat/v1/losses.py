"""``tf.compat.v1.losses`` twins (``softmax_cross_entropy``, ``sparse_softmax_cross_entropy``,
``Reduction``): TF1's signatures and meaning, on every backend.

TF1's conventions kept: classes on the last axis; ``weights`` a scalar or broadcastable to
the loss; the default reduction ``SUM_BY_NONZERO_WEIGHTS`` divides by the number of
non-zero weights (broadcast to the loss), ``MEAN`` by their sum, ``SUM_OVER_BATCH_SIZE`` by
the number of losses, and an empty denominator gives 0; no gradient flows into
``onehot_labels``; sparse ``labels`` and ``weights`` of shape ``[batch, 1]`` are squeezed; in
a TF1 graph the loss is added to ``loss_collection``. Differences from TF: a class with
label 0 at a ``-inf`` logit adds 0 (TF: NaN); float64 losses are reduced in float64 (TF
reduces in float32 and casts back).

>>> from xent.compat.v1 import losses
>>> print(losses.sparse_softmax_cross_entropy([1, 2], [[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]],
...                                           weights=[1.0, 0.0]).round(7))
0.4790107
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

from xent import _dispatch
from xent.compat import _compose

__all__ = ["Reduction", "softmax_cross_entropy", "sparse_softmax_cross_entropy"]


class Reduction:
    """``tf.compat.v1.losses.Reduction``: how a weighted loss is reduced."""

    NONE = "none"
    SUM = "weighted_sum"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    MEAN = "weighted_mean"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls) -> tuple[str, ...]:
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE,
                cls.SUM_OVER_NONZERO_WEIGHTS, cls.SUM_BY_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key: str) -> None:
        if key not in _REDUCTION_KEYS:
            raise ValueError(f"Invalid Reduction Key {key}. Key should be one of "
                             f"{cls.all()}.")


_REDUCTION_KEYS = frozenset(Reduction.all())


def softmax_cross_entropy(onehot_labels: Any, logits: Any, weights: Any = 1.0,
                          label_smoothing: float = 0, scope: str | None = None,
                          loss_collection: str | None = "losses",
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Any:
    """``tf.compat.v1.losses.softmax_cross_entropy``: the dense loss over the last axis
    (labels smoothed to ``(1 - e) * labels + e / C``, no gradient into them), weighted and
    reduced as TF1 does."""
    if onehot_labels is None:
        raise ValueError("Argument `onehot_labels` must not be None.")
    if logits is None:
        raise ValueError("Argument `logits` must not be None.")
    if reduction not in _REDUCTION_KEYS:
        Reduction.validate(reduction)
    call = _compose.Call(logits, onehot_labels)
    if _dispatch.owner(onehot_labels, "onehot_labels") is call.be:
        call.labels = call.be.stop_gradient(call.labels)
    core = functools.partial(call.dense, label_smoothing=label_smoothing) if (
        label_smoothing > 0) else call.dense
    return _collected(call.be, _weighted(call, core, weights, reduction), loss_collection)


def sparse_softmax_cross_entropy(labels: Any, logits: Any, weights: Any = 1.0,
                                 scope: str | None = None,
                                 loss_collection: str | None = "losses",
                                 reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> Any:
    """``tf.compat.v1.losses.sparse_softmax_cross_entropy``: the sparse loss over the last
    axis, weighted and reduced as TF1 does."""
    if labels is None:
        raise ValueError("Argument `labels` must not be None.")
    if logits is None:
        raise ValueError("Argument `logits` must not be None.")
    if reduction not in _REDUCTION_KEYS:
        Reduction.validate(reduction)
    call = _compose.Call(logits, labels)
    be, logits, shape = call.be, call.logits, call.shape
    rank = len(shape)
    if len(call.labels_shape) == rank and call.labels_shape[-1] == 1:  # [batch, 1] labels
        call.labels = _compose.squeeze(call.labels, -1, rank)
        call.labels_shape = call.labels_shape[:-1]
    if not isinstance(weights, (int, float)):
        weights = _compose.native(be, weights, like=logits, dtype=call.dtype)
        weight_shape = _compose.shape_of(be, weights)
        if len(weight_shape) == len(call.labels_shape) + 1:
            weights = _compose.squeeze(weights, -1, len(weight_shape))
    return _collected(be, _weighted(call, call.sparse, weights, reduction), loss_collection)


def _weighted(call: _compose.Call, core: Any, weights: Any, reduction: str) -> Any:
    """TF1's ``compute_weighted_loss`` composed from the core: ``core(reduction=...,
    weights=...)`` is the weighted loss of ``call`` with the core's ``reduction``."""
    be, logits = call.be, call.logits
    shape = call.shape[:-1]
    size = None if None in shape else math.prod(shape)  # type: ignore[arg-type]  # no None
    scalar = isinstance(weights, (int, float))
    if not scalar:
        weights = _compose.native(be, weights, like=logits, dtype=be.dtype_name(logits))
    core_weights = None if scalar and weights == 1.0 else weights
    if reduction == Reduction.NONE:
        return core(reduction="none", weights=core_weights)
    if reduction == Reduction.SUM:
        return core(reduction="sum", weights=core_weights)
    if core_weights is None and size:  # every weight is 1: each mean is over the losses
        return core(reduction="mean")
    loss = core(reduction="none", weights=core_weights)
    total = be.total(loss)
    if scalar and size is not None:
        count = {Reduction.SUM_OVER_BATCH_SIZE: size, Reduction.MEAN: size * weights}.get(
            reduction, size if weights != 0 else 0)
        denominator = _compose.native(be, float(count), like=total, dtype=be.dtype_name(total))
    elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
        denominator = be.count(be.broadcast_like(_compose.native(be, True), loss), loss)
    else:
        if scalar:
            weights = _compose.native(be, float(weights), like=logits,
                                      dtype=be.dtype_name(logits))
        if reduction == Reduction.MEAN:
            denominator = be.total(be.broadcast_like(weights, loss))
        else:  # SUM_BY_NONZERO_WEIGHTS: the number of non-zero weights
            denominator = be.count(be.broadcast_like(_compose.nonzero(weights), loss), loss)
    return _compose.divide_no_nan(be, total, denominator, loss)


def _collected(be: Any, loss: Any, loss_collection: str | None) -> Any:
    """TF1's ``util.add_loss``: in a graph (not eagerly), add the loss to the collection.
    A symbolic loss is one built in a graph (TF1 or ``tf.function``); asking that is half
    the cost of ``tf.executing_eagerly()``."""
    if loss_collection and be.name == "tensorflow":
        tf = sys.modules["tensorflow"]
        if tf.is_symbolic_tensor(loss):
            tf.compat.v1.add_to_collection(loss_collection, loss)
    return loss
