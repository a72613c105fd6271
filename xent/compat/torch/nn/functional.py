"""``torch.nn.functional`` twins: torch's signatures and meaning, on every backend.

Change one import and the loss line runs on NumPy, TensorFlow or JAX tensors too:

    # import torch.nn.functional as F
    from xent.compat.torch.nn import functional as F

torch's conventions kept: the class axis is dim 1 (dim 0 for an unbatched ``[C]`` input);
``input`` is ``[C]``, ``[N, C]`` or ``[N, C, d1, ...]``; ``target`` is class indices (``[]``,
``[N]``, ``[N, d1, ...]``) or class probabilities (the shape of ``input``); ``weight`` is
``[C]``; ``reduction="mean"`` divides by ``sum(weight[target])`` over the rows not ignored
for index targets and by the number of rows for probabilities. The math is the core's
(``xent.sparse_softmax_cross_entropy_with_logits`` and its dense twin); the only
difference from torch: a class with target probability 0 at a ``-inf`` logit adds 0
(torch: NaN).

>>> from xent.compat.torch.nn import functional as F
>>> print(F.cross_entropy([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], [1, 2]).round(7))
0.8393433
"""

from __future__ import annotations

import warnings
from typing import Any

import xent
from xent.compat import _compose

__all__ = ["cross_entropy", "log_softmax", "softmax"]

_REDUCTIONS = ("none", "mean", "sum")


def _softmax_dim(ndim: int) -> int:
    """torch's ``_get_softmax_dim`` for ``dim=None`` (deprecated, with its warning)."""
    warnings.warn(
        "Implicit dimension choice for softmax has been deprecated. "
        "Change the call to include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _dtype_name(dtype: Any) -> str:
    """``torch.float64``, ``"float64"`` or ``np.float64`` -> ``"float64"``."""
    name = getattr(dtype, "__name__", None) or str(dtype)
    return name.rsplit(".", 1)[-1]


def _prepared(input: Any, dim: int | None, dtype: Any) -> tuple[Any, int]:
    be = _compose.backend_of(input)
    input = _compose.native(be, input)
    if dtype is not None:
        input = be.cast(input, _dtype_name(dtype))
    if dim is None:
        dim = _softmax_dim(len(_compose.static_shape(be, input)))
    return input, dim


def softmax(input: Any, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Any:
    """``torch.nn.functional.softmax``: ``exp(input - logsumexp(input))`` along ``dim``.

    ``dtype`` casts ``input`` first (a torch dtype or its name)."""
    input, dim = _prepared(input, dim, dtype)
    return xent.softmax(input, dim)


def log_softmax(input: Any, dim: int | None = None, _stacklevel: int = 3,
                dtype: Any = None) -> Any:
    """``torch.nn.functional.log_softmax``: ``input - logsumexp(input)`` along ``dim``."""
    input, dim = _prepared(input, dim, dtype)
    return xent.log_softmax(input, dim)


def legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """torch's ``_Reduction.legacy_get_string`` (with its deprecation warning)."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(
        "size_average and reduce args will be deprecated, please use "
        f"reduction='{reduction}' instead.", stacklevel=3)
    return reduction


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Any:
    """``torch.nn.functional.cross_entropy`` on any backend.

    Per row (classes on dim 1), with ``y`` the target (one-hot for indices) smoothed to
    ``(1 - label_smoothing) * y + label_smoothing / C``:
    ``loss = sum_c weight_c * y_c * (logsumexp(input) - input_c)``; 0 where the index target
    equals ``ignore_index``.

    Args:
      input: ``[C]``, ``[N, C]`` or ``[N, C, d1, ...]`` floating logits.
      target: class indices (``[]``, ``[N]``, ``[N, d1, ...]``, integers) or class
        probabilities (the shape of ``input``).
      weight: ``[C]`` class weights.
      size_average, reduce: torch's deprecated reduction flags (they override
        ``reduction`` when either is given, with torch's warning).
      ignore_index: an index target to skip (index targets only; must stay negative with
        probabilities, as in torch).
      reduction: ``"none"``, ``"mean"`` (weighted mean for index targets: the sum over
        ``sum(weight[target])`` of the rows not ignored; over the row count for
        probabilities) or ``"sum"``.
      label_smoothing: in [0, 1].

    Raises:
      ValueError: an unknown reduction, a non-negative ``ignore_index`` with probability
        targets, and the core's errors (labels out of range, shapes, options).
    """
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    call = _compose.Call(input, target)
    shape = call.shape
    axis = 0 if len(shape) == 1 else 1
    if call.labels_shape == shape:  # class probabilities
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        return call.dense(axis=axis, reduction=reduction, class_weights=weight,
                          label_smoothing=label_smoothing)
    if reduction == "mean" and weight is not None:
        reduction = "weighted_mean"  # sum(weight[target]) over the rows not ignored
    ignored = ignore_index if _compose.might_hold(call.be, call.labels, ignore_index,
                                                  shape[axis]) else None
    return call.sparse(axis=axis, reduction=reduction, class_weights=weight,
                       label_smoothing=label_smoothing, ignore_index=ignored)
