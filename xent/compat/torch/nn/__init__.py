"""``torch.nn`` twins: :class:`CrossEntropyLoss` and :mod:`.functional`, on every backend.

>>> from xent.compat.torch import nn
>>> loss_fn = nn.CrossEntropyLoss(reduction="sum")
>>> print(loss_fn([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], [1, 2]).round(6))
1.678687
"""

from __future__ import annotations

from typing import Any

from xent.compat.torch.nn import functional
from xent.compat.torch.nn.functional import legacy_reduction

__all__ = ["CrossEntropyLoss", "functional"]


class CrossEntropyLoss:
    """``torch.nn.CrossEntropyLoss``: :func:`functional.cross_entropy` with its options
    fixed at construction (``size_average`` / ``reduce`` resolved then, as torch does).

    A plain callable, not a ``torch.nn.Module`` (it holds no parameters and must run
    without torch): ``loss_fn(input, target)`` or ``loss_fn.forward(input, target)``."""

    def __init__(self, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        if size_average is not None or reduce is not None:
            reduction = legacy_reduction(size_average, reduce)
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, input: Any, target: Any) -> Any:
        return functional.cross_entropy(
            input, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.label_smoothing)

    __call__ = forward

    def __repr__(self) -> str:
        return "CrossEntropyLoss()"
