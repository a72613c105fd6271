"""The array operations loss options are composed from (``xent._options``), in torch."""

from __future__ import annotations

from typing import Any

import torch

_HALF = (torch.float16, torch.bfloat16)


def _compute(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


def _holds(dtype: torch.dtype, value: int) -> bool:
    """Whether integer ``dtype`` holds ``value`` (torch wraps -100 to 156 in uint8)."""
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max


class TorchArrayOps:
    """See ``xent.backends.Backend`` for what each operation means."""

    def where(self, condition: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        return torch.where(condition, x, y)

    def equal(self, x: torch.Tensor, value: int) -> torch.Tensor:
        if not _holds(x.dtype, value):
            return torch.zeros_like(x, dtype=torch.bool)
        return x == value

    def not_equal(self, x: torch.Tensor, value: int) -> torch.Tensor:
        if not _holds(x.dtype, value):
            return torch.ones_like(x, dtype=torch.bool)
        return x != value

    def expand_dims(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return x.unsqueeze(axis)

    def in_range(self, index: torch.Tensor, num_classes: Any) -> torch.Tensor:
        return (index >= 0) & (index < num_classes)

    def one_hot(self, index: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
        # scatter, not F.one_hot: one pass, in like's dtype, and vmap has a rule for it
        return torch.zeros_like(like).scatter(axis, index.long().unsqueeze(axis), 1.0)

    def take(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return table[index.long().clamp(0, table.shape[0] - 1)]

    def along(self, vector: torch.Tensor, axis: int, like: torch.Tensor) -> torch.Tensor:
        return vector.reshape([-1 if d == axis else 1 for d in range(like.ndim)])

    def row_dot(self, labels: torch.Tensor, vector: torch.Tensor, axis: int) -> torch.Tensor:
        dtype = _compute(labels.dtype)
        dot = torch.matmul(labels.movedim(axis, -1).to(dtype), vector.to(dtype))
        return dot.to(labels.dtype)

    def broadcast_like(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.expand(like.shape)

    def total(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dtype=_compute(x.dtype))

    def count(self, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return mask.sum(dtype=_compute(like.dtype))

    def divide(self, total: torch.Tensor, denominator: torch.Tensor,
               like: torch.Tensor) -> torch.Tensor:
        return (total / denominator).to(like.dtype)
