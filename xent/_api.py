"""The public functions: validate once, pick a backend, call it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from xent import _dispatch, _validate
from xent._dispatch import owner, pick
from xent.backends import Backend
from xent.backends._base import numpy_dtype_name

Array = Any
F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = object()


def _keyword_only(fn: F) -> F:
    """Show ``fn``'s contract signature ``(*, labels, logits, ...)``; the ``*args`` it really
    takes exist only to turn a positional call into a clear TypeError."""
    params = [
        p.replace(default=inspect.Parameter.empty) if p.name in ("labels", "logits") else p
        for p in inspect.signature(fn).parameters.values()
        if p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def _prepare(
    logits: Array, labels: Array, axis: object, backend: str | Backend | None
) -> tuple[Backend, Array, bool, tuple[int | None, ...] | None, str, int]:
    """Pick the backend, bring ``logits`` to it and check them: ``(backend, logits,
    labels_are_neutral, shape, dtype name, axis)``. One call: this is the hot path.
    ``shape`` is None for an unknown rank; ``axis`` is then as given, maybe negative."""
    logits_owner = owner(logits, "logits")
    labels_owner = None if labels is None else owner(labels, "labels")
    be = pick(logits_owner, labels_owner, backend)
    if logits_owner is None and type(logits) not in be.native_types:
        logits = be.asarray(logits)
    shape, dtype = be.shape(logits), be.dtype_name(logits)
    axis = _validate.check_logits(shape, dtype, axis)
    return be, logits, labels_owner is None, shape, dtype, axis


def _neutral_labels(labels: Array) -> tuple[np.ndarray, str]:
    """Framework-neutral labels as a NumPy array, and its dtype name."""
    if type(labels) is not np.ndarray:
        labels = np.asarray(labels)
    return labels, numpy_dtype_name(labels.dtype)


def softmax(logits: Array, axis: int = -1, *, backend: str | Backend | None = None) -> Array:
    """Softmax along ``axis``: ``exp(logits - logsumexp(logits))``.

    Args:
      logits: ``[..., num_classes, ...]`` floating tensor of any supported framework.
      axis: the class axis.
      backend: where framework-neutral input (NumPy, lists) runs.

    Returns a tensor of the shape, dtype and framework of ``logits``. A row with a NaN or
    ``+inf`` logit, or with every logit ``-inf``, is NaN.

    >>> import xent
    >>> xent.softmax([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]).round(8)
    array([[0.227863  , 0.61939586, 0.15274114],
           [0.49674623, 0.20196195, 0.30129182]])
    """
    be, logits, _, _, _, axis = _prepare(logits, None, axis, backend)
    return be.softmax(logits, axis)


def log_softmax(logits: Array, axis: int = -1, *, backend: str | Backend | None = None) -> Array:
    """Log-softmax along ``axis``: ``logits - logsumexp(logits)``, accurate for confident rows.

    Same arguments and conventions as :func:`softmax`.

    >>> import xent
    >>> xent.log_softmax([0.5, 1.5, 0.1]).round(6)
    array([-1.479011, -0.479011, -1.879011])
    """
    be, logits, _, _, _, axis = _prepare(logits, None, axis, backend)
    return be.log_softmax(logits, axis)


@_keyword_only
def softmax_cross_entropy_with_logits(
    *args: Any,
    labels: Array = _MISSING,
    logits: Array = _MISSING,
    axis: int = -1,
    reduction: str = "none",
    backend: str | Backend | None = None,
) -> Array:
    """Cross-entropy between label distributions and softmax(logits), along ``axis``.

    ``loss = sum_c labels_c * (logsumexp(logits) - logits_c)``; a class with ``labels_c == 0``
    contributes exactly 0, also where ``logits_c == -inf`` (a masked class).

    Args:
      labels: ``[..., num_classes, ...]``, the shape of ``logits``; soft and unnormalised
        labels follow the formula (they are not renormalised).
      logits: ``[..., num_classes, ...]`` floating tensor.
      axis: the class axis.
      reduction: ``"none"`` (one loss per row), ``"sum"`` or ``"mean"`` over all rows.
      backend: where framework-neutral input (NumPy, lists) runs.

    Gradients (autodiff frameworks): ``d/dlogits = softmax * sum(labels) - labels`` and
    ``d/dlabels = logsumexp - logits``.

    Raises:
      TypeError: positional labels/logits, non-floating logits, tensors of two frameworks.
      ValueError: shape mismatch, bad axis or reduction, an empty class axis.

    >>> import xent
    >>> xent.softmax_cross_entropy_with_logits(
    ...     labels=[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    ...     logits=[[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]).round(8)
    array([0.4790107 , 1.19967598])
    """
    if args or labels is _MISSING or logits is _MISSING:
        _missing(args, labels, logits, "softmax_cross_entropy_with_logits")
    be, logits, neutral, shape, dtype, axis = _prepare(logits, labels, axis, backend)
    if reduction not in _validate.REDUCTIONS:
        _validate.check_reduction(reduction)
    if neutral:
        labels, labels_dtype = _neutral_labels(labels)
        _validate.check_dense_labels(labels.shape, labels_dtype, shape)
        if np.ndarray not in be.native_types:
            labels = be.asarray(labels, like=logits, dtype=dtype)
    else:
        _validate.check_dense_labels(be.shape(labels), be.dtype_name(labels), shape)
        labels = be.cast(labels, dtype)
    loss = be.softmax_cross_entropy_with_logits(labels, logits, axis)
    return loss if reduction == "none" else be.reduce(loss, reduction)


@_keyword_only
def sparse_softmax_cross_entropy_with_logits(
    *args: Any,
    labels: Array = _MISSING,
    logits: Array = _MISSING,
    axis: int = -1,
    reduction: str = "none",
    backend: str | Backend | None = None,
) -> Array:
    """Cross-entropy with integer class labels: ``logsumexp(logits) - logits[labels]``.

    Equal to :func:`softmax_cross_entropy_with_logits` with one-hot labels.

    Args:
      labels: integer class indices in ``[0, num_classes)``, the shape of ``logits``
        without ``axis``.
      logits: ``[..., num_classes, ...]`` floating tensor.
      axis, reduction, backend: as in :func:`softmax_cross_entropy_with_logits`.

    Raises:
      ValueError: a label out of range (in eager execution; while tracing, that row's
        loss is NaN), shape mismatch, bad axis or reduction, an empty class axis.
      TypeError: positional labels/logits, non-integer labels, non-floating logits.

    >>> import xent
    >>> xent.sparse_softmax_cross_entropy_with_logits(
    ...     labels=[1, 2], logits=[[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]).round(8)
    array([0.4790107 , 1.19967598])
    """
    if args or labels is _MISSING or logits is _MISSING:
        _missing(args, labels, logits, "sparse_softmax_cross_entropy_with_logits")
    be, logits, neutral, shape, _, axis = _prepare(logits, labels, axis, backend)
    if reduction not in _validate.REDUCTIONS:
        _validate.check_reduction(reduction)
    if neutral:
        labels, labels_dtype = _neutral_labels(labels)
        _validate.check_sparse_labels(labels.shape, labels_dtype, shape, axis)
        if np.ndarray not in be.native_types:
            labels = be.asarray(labels, like=logits)
    else:
        _validate.check_sparse_labels(be.shape(labels), be.dtype_name(labels), shape, axis)
    num_classes = None if shape is None else shape[axis]  # None: unknown while tracing
    if num_classes is not None:
        bad = be.first_out_of_range(labels, num_classes)
        if bad is not None:
            raise _validate.label_out_of_range(bad, num_classes)
    loss = be.sparse_softmax_cross_entropy_with_logits(labels, logits, axis)
    return loss if reduction == "none" else be.reduce(loss, reduction)


def _missing(args: tuple[Any, ...], labels: Any, logits: Any, function: str) -> None:
    if args:
        raise _validate.positional_arguments(function)
    names = [n for n, v in (("labels", labels), ("logits", logits)) if v is _MISSING]
    raise TypeError(f"{function}: missing required keyword argument(s) {', '.join(names)}")


use_backend = _dispatch.use_backend


# TensorFlow's autograph would convert these, and the dispatch and imports below them, when
# the first xent call of a process is traced (the TF backend tells autograph to leave all of
# xent alone only once it is imported): an autograph artifact is called as it is. The
# attribute is autograph's marker, set without importing TensorFlow.
for _public in (softmax, log_softmax, softmax_cross_entropy_with_logits,
                sparse_softmax_cross_entropy_with_logits):
    _public.autograph_info__ = frozenset()  # type: ignore[attr-defined]
