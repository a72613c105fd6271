"""Keras 3 loss twins (``keras.losses.categorical_crossentropy``,
``sparse_categorical_crossentropy`` and their classes): Keras' signatures and meaning, on
every backend.

    # from keras import losses
    from xent.compat.keras import losses

Keras' conventions kept: ``(y_true, y_pred)`` order; ``from_logits=False`` (the default)
takes probabilities; sparse labels may be ``[batch]`` or ``[batch, 1]`` (and floats);
``label_smoothing`` divides by the size of the *last* axis (as Keras does, whatever
``axis``); the class forms compute in ``dtype`` (Keras' ``floatx()``, float32) and reduce
with ``sum_over_batch_size`` (the mean over the rows, over the rows not ignored with
``ignore_class``), and an empty denominator gives 0.

Probabilities: Keras normalises ``y_pred`` by its sum, clips it to ``[eps, 1 - eps]`` and
takes ``-sum(y_true * log(p))``. The twin gives the core ``log(clip(y_pred / sum))`` as
logits (no softmax of its own): equal to Keras wherever nothing is clipped; where some
probability is clipped, the clipped values no longer sum to 1, and the twin's loss (which
normalises them again) differs from Keras' by ``sum(y_true) * log(sum(clipped p))``, at most
about ``C * eps`` (eps = 1e-7).

>>> from xent.compat.keras import losses
>>> print(losses.sparse_categorical_crossentropy(
...     [1, 2], [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]).round(4))
[0.0513 2.3026]
"""

from __future__ import annotations

import sys
from typing import Any

from xent.compat import _compose

__all__ = [
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
]

_REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


def _epsilon() -> float:
    """``keras.config.epsilon()`` when Keras is loaded, else its default."""
    keras = sys.modules.get("keras")
    return float(keras.config.epsilon()) if keras is not None else 1e-7


def _floatx() -> str:
    keras = sys.modules.get("keras")
    return str(keras.config.floatx()) if keras is not None else "float32"


def _check_axis(axis: Any) -> None:
    if isinstance(axis, bool):
        raise ValueError(
            f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")


def _as_logits(be: Any, y_pred: Any, axis: int) -> Any:
    """Keras' probabilities as logits: ``log(clip(y_pred / sum(y_pred), eps, 1 - eps))``."""
    eps = _epsilon()
    p = y_pred / _compose.row_sum(be, y_pred, axis)
    p = be.where(p < eps, eps, be.where(p > 1.0 - eps, 1.0 - eps, p))
    return _compose.log(be, p)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> Any:
    """``keras.losses.categorical_crossentropy``: ``-sum(y_true * log(p))`` along ``axis``,
    with ``p = softmax(y_pred)`` (``from_logits=True``) or the probabilities ``y_pred``."""
    _check_axis(axis)
    return _categorical(_compose.Call(y_pred, y_true), from_logits, label_smoothing, axis)


def _categorical(call: _compose.Call, from_logits: bool, label_smoothing: float, axis: int,
                 **core: Any) -> Any:
    """:func:`categorical_crossentropy` through the core, with the core's ``reduction``
    and ``weights`` in ``core``."""
    be, shape = call.be, call.shape
    rank = len(shape)
    logits = call.logits if from_logits else _as_logits(be, call.logits, axis)
    smoothing = label_smoothing
    if label_smoothing and axis % rank != rank - 1:  # Keras divides by the last axis' size
        last = shape[-1]
        if last is None:
            raise ValueError("label_smoothing: Keras divides by the last axis' size, which is "
                             "unknown here; give y_pred a static last dimension")
        call.labels = (be.cast(call.labels, call.dtype) * (1.0 - label_smoothing)
                       + label_smoothing / last)
        call.labels_dtype, smoothing = call.dtype, 0.0
    return call.dense(logits, axis=axis, label_smoothing=smoothing or 0.0, **core)


def _sparse_labels(call: _compose.Call, axis: int) -> _compose.Call:
    """``call`` with Keras' sparse labels: ``[batch, 1]`` squeezed at ``axis``, floats
    cast to integers."""
    rank, shape = len(call.shape), call.labels_shape
    if len(shape) == rank and shape[axis] == 1:
        axis %= rank
        call.labels = _compose.squeeze(call.labels, axis, rank)
        call.labels_shape = shape[:axis] + shape[axis + 1:]
    if not _compose.is_integer_name(call.labels_dtype):
        call.labels, call.labels_dtype = call.be.cast(call.labels, "int32"), "int32"
    return call


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1) -> Any:
    """``keras.losses.sparse_categorical_crossentropy``: ``-log(p[y_true])`` along ``axis``;
    0 where ``y_true == ignore_class``."""
    call = _sparse_labels(_compose.Call(y_pred, y_true), axis)
    logits = call.logits if from_logits else _as_logits(call.be, call.logits, axis)
    return call.sparse(logits, axis=axis, ignore_index=ignore_class)


class _Loss:
    """Keras' ``Loss.__call__``: per-row losses, ``sample_weight``, the reduction."""

    _axis: int = -1

    def __init__(self, name: str, reduction: Any, dtype: Any) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(
                "Invalid value for argument `reduction`. Expected one of "
                f"{set(_REDUCTIONS)}. Received: reduction={reduction}")
        self.name = name
        self.reduction = reduction
        # Keras resolves the compute dtype at construction (``floatx()`` then)
        self._dtype = str(getattr(dtype, "name", dtype) or _floatx())

    @property
    def dtype(self) -> str:
        return self._dtype

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        call = _compose.Call(y_pred, y_true, self._dtype)
        if sample_weight is not None:
            _compose.backend_of(call.logits, sample_weight)  # raises for two frameworks
        return self._reduced(self._labels(call), sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    def _labels(self, call: _compose.Call) -> _compose.Call:
        """``call`` with the labels as the core takes them, prepared once a call."""
        return call

    def _core(self, call: _compose.Call, reduction: str, weights: Any) -> Any:
        raise NotImplementedError

    def _ignored(self, call: _compose.Call) -> Any:
        """The rows kept (boolean, the loss shape), or None when nothing can be ignored."""
        return None

    def _reduced(self, call: _compose.Call, sample_weight: Any) -> Any:
        be, shape = call.be, call.shape
        axis = self._axis % len(shape) if shape else 0
        loss_shape = shape[:axis] + shape[axis + 1:]
        weights, expand = (None, False) if sample_weight is None else _keras_weights(
            be, sample_weight, loss_shape, call.logits)
        reduction = self.reduction
        if reduction in (None, "none") or loss_shape in ((), (0,)):
            loss = self._core(call, "none", weights)
            return be.expand_dims(loss, -1) if expand else loss
        kept = self._ignored(call)
        if reduction == "sum":
            return self._core(call, "sum", weights)
        if reduction == "mean_with_sample_weight" and (weights is not None or kept is not None):
            total = self._core(call, "sum", weights)
            if weights is None:
                return _compose.divide_no_nan(be, total, be.count(kept, total), total)
            if kept is None:  # Keras divides by the sum of sample_weight as given
                return _compose.divide_no_nan(be, total, be.total(weights), total)
            kept_weights = be.where(kept, be.broadcast_like(weights, kept), 0.0)
            return _compose.divide_no_nan(be, total, be.total(kept_weights), total)
        if kept is None:  # the mean over the batch
            if None not in loss_shape and 0 not in loss_shape:
                return self._core(call, "mean", weights)
            total = self._core(call, "sum", weights)
            count = _compose.native(be, 1.0 * _size(loss_shape), like=total,
                                    dtype=be.dtype_name(total))
            return _compose.divide_no_nan(be, total, count, total)
        total = self._core(call, "sum", weights)
        return _compose.divide_no_nan(be, total, be.count(kept, total), total)


def _size(shape: tuple[int | None, ...]) -> int:
    size = 1
    for d in shape:
        size *= d or 0
    return size


def _keras_weights(be: Any, sample_weight: Any, loss_shape: tuple[int | None, ...],
                   like: Any) -> tuple[Any, bool]:
    """``sample_weight`` shaped for the core as Keras' ``squeeze_or_expand_to_same_rank``
    does, and whether Keras expands the loss itself (a ``[batch]`` loss with ``[batch, 1]``
    weights: its ``reduction="none"`` result is ``[batch, 1]``)."""
    weights = _compose.native(be, sample_weight, like=like, dtype=be.dtype_name(like))
    shape = _compose.shape_of(be, weights)
    if len(shape) == len(loss_shape) + 1 and shape[-1] == 1:
        return _compose.squeeze(weights, -1, len(shape)), len(loss_shape) == 1
    return weights, False


class CategoricalCrossentropy(_Loss):
    """``keras.losses.CategoricalCrossentropy``: :func:`categorical_crossentropy` reduced."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 axis: int = -1, reduction: Any = "sum_over_batch_size",
                 name: str = "categorical_crossentropy", dtype: Any = None) -> None:
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = self._axis = axis

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return categorical_crossentropy(y_true, y_pred, self.from_logits,
                                        self.label_smoothing, self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}

    def _core(self, call: _compose.Call, reduction: str, weights: Any) -> Any:
        return _categorical(call, self.from_logits, self.label_smoothing, self.axis,
                            reduction=reduction, weights=weights)


class SparseCategoricalCrossentropy(_Loss):
    """``keras.losses.SparseCategoricalCrossentropy``: the sparse loss reduced; with
    ``ignore_class``, the mean is over the rows not ignored."""

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: Any = "sum_over_batch_size", axis: int = -1,
                 name: str = "sparse_categorical_crossentropy", dtype: Any = None) -> None:
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = self._axis = axis

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits,
                                               self.ignore_class, self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}

    def _labels(self, call: _compose.Call) -> _compose.Call:
        return _sparse_labels(call, self.axis)

    def _core(self, call: _compose.Call, reduction: str, weights: Any) -> Any:
        be = call.be
        logits = call.logits if self.from_logits else _as_logits(be, call.logits, self.axis)
        ignored = self.ignore_class
        if ignored is not None and not _compose.might_hold(be, call.labels, ignored,
                                                           call.shape[self.axis]):
            ignored = None
        return call.sparse(logits, axis=self.axis, reduction=reduction, weights=weights,
                           ignore_index=ignored)

    def _ignored(self, call: _compose.Call) -> Any:
        if self.ignore_class is None:
            return None
        return call.be.not_equal(call.labels, self.ignore_class)
