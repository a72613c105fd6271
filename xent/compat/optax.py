"""optax twins (``optax.softmax_cross_entropy``, ``..._with_integer_labels``,
``smooth_labels``): optax's signatures and meaning, on every backend.

    # import optax
    from xent.compat import optax

optax's conventions kept: ``(logits, labels)`` order; ``where`` excludes classes (a mask of
the logits' shape) or rows (the loss's shape); a row with no class left has loss 0;
smoothing is a separate label transform (over the kept classes with ``where``). The math is
the core's. Differences from optax, both xent contract rules: a class with label 0 at a
``-inf`` logit adds 0 (optax: NaN); a sparse label on a class ``where`` excludes adds 0, as
the dense loss does (optax's sparse loss reads that logit: ``logsumexp(kept) - x_label``).

>>> from xent.compat import optax
>>> print(optax.softmax_cross_entropy_with_integer_labels(
...     [[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]], [0, 1]).round(4))
[0.2761 2.9518]
"""

from __future__ import annotations

from typing import Any

import xent
from xent.compat import _compose

__all__ = [
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]


def _empty_rows_zero(be: Any, loss: Any, mask: Any, logits: Any, axis: int) -> Any:
    """optax: a row with every class excluded has loss 0 (the core: NaN, like a row of
    ``-inf``)."""
    kept = _compose.kept_count(be, mask, logits, axis)
    return be.where(kept > 0, loss, 0.0)


def softmax_cross_entropy(logits: Any, labels: Any, axis: Any = -1, where: Any = None) -> Any:
    """``optax.softmax_cross_entropy``: ``-sum_c labels_c * log_softmax(logits)_c`` along
    ``axis``, over the classes ``where`` keeps; shape ``logits.shape`` without ``axis``."""
    axis = _compose.class_axis(axis, "softmax_cross_entropy")
    if where is None:
        return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis)
    be = _compose.backend_of(logits, labels)
    logits = _compose.native(be, logits)
    mask = _compose.where_mask(be, where, logits, axis)
    loss = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis,
                                                  where=mask)
    return _empty_rows_zero(be, loss, mask, logits, axis)


def softmax_cross_entropy_with_integer_labels(logits: Any, labels: Any, axis: Any = -1,
                                              where: Any = None) -> Any:
    """``optax.softmax_cross_entropy_with_integer_labels``: ``logsumexp(logits) -
    logits[labels]`` along ``axis``, over the classes ``where`` keeps."""
    axis = _compose.class_axis(axis, "softmax_cross_entropy_with_integer_labels")
    if where is None:
        return xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits,
                                                             axis=axis)
    be = _compose.backend_of(logits, labels)
    logits = _compose.native(be, logits)
    mask = _compose.where_mask(be, where, logits, axis)
    loss = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits,
                                                         axis=axis, where=mask)
    return _empty_rows_zero(be, loss, mask, logits, axis)


def smooth_labels(labels: Any, alpha: Any, *, axis: Any = -1, where: Any = None) -> Any:
    """``optax.smooth_labels``: ``(1 - alpha) * labels + alpha / num_classes``, with
    ``num_classes`` the classes ``where`` keeps in each row (all of ``axis`` without it)."""
    be = _compose.backend_of(labels)
    labels = _compose.native(be, labels)
    shape = _compose.shape_of(be, labels)
    if where is None:
        axes = range(len(shape)) if axis is None else (
            axis if isinstance(axis, tuple) else (axis,))
        num_classes = 1
        for a in axes:
            num_classes *= shape[a] or 0  # static: the twins' shapes are known here
        return (1.0 - alpha) * labels + alpha / num_classes
    axis = _compose.class_axis(axis, "smooth_labels")
    mask = _compose.native(be, where, like=labels)
    kept = be.expand_dims(_compose.kept_count(be, mask, labels, axis), axis % len(shape))
    return (1.0 - alpha) * labels + alpha / kept
