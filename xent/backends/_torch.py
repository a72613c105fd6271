"""The PyTorch backend: torch's fused kernels plus what the semantics need.

``softmax``, ``log_softmax`` and the sparse loss are torch's own kernels
(``F.cross_entropy`` for the sparse loss). The dense loss needs more: torch computes
``-sum_c labels_c * log_softmax_c``, and a masked class (``labels_c == 0`` at a ``-inf``
logit) makes that ``0 * -inf = NaN``. ``_torch_ops`` sums the products with ``nansum``, puts
back the rows that really are NaN, and gives the analytic gradients through one custom
autograd function. Accuracy is torch's (a few eps of the loss's scale; see ``_torch_ops``).

float16 and bfloat16 are computed in float32 and returned in their own dtype. Results stay
on the input's device, and nothing syncs with an accelerator: sparse labels are
range-checked on CPU only (elsewhere out-of-range rows give NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xent.backends import _torch_ops as ops
from xent.backends._base import Backend
from xent.backends._torch_options import TorchArrayOps

_HALF = (torch.float16, torch.bfloat16)
_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _compute(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the math runs in (float32 for the 16-bit floats)."""
    return x.float() if x.dtype in _HALF else x


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"torch backend: no torch dtype called {name!r}")
    return dtype


def _from_numpy(value: Any) -> torch.Tensor:
    """A CPU tensor from framework-neutral input (never sharing a read-only buffer)."""
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":  # torch cannot read ml_dtypes' bfloat16
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    if not array.flags.writeable or any(s < 0 for s in array.strides):
        array = array.copy()  # torch warns on read-only and refuses negative strides
    return torch.from_numpy(array)


class TorchBackend(TorchArrayOps, Backend):
    """torch tensors on any device; eager autograd and ``torch.func`` transforms."""

    name = "torch"
    module = "torch"
    modes = ("eager",)
    has_autodiff = True
    dtypes = ("float16", "bfloat16", "float32", "float64")

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: torch.Tensor) -> str:
        name = _DTYPE_NAMES.get(x.dtype)
        if name is None:
            name = _DTYPE_NAMES[x.dtype] = str(x.dtype).removeprefix("torch.")
        return name

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> torch.Tensor:
        tensor = value if isinstance(value, torch.Tensor) else _from_numpy(value)
        return tensor.to(
            device=None if like is None else like.device,
            dtype=None if dtype is None else _torch_dtype(dtype),
        )

    def cast(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        return x if self.dtype_name(x) == dtype else x.to(_torch_dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        if not isinstance(x, torch.Tensor):
            return np.asarray(x)
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16 of its own
            array = x.float().numpy()
            try:
                import ml_dtypes

                return array.astype(ml_dtypes.bfloat16)
            except ImportError:
                return array
        return x.numpy()

    def stop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    def first_out_of_range(self, labels: torch.Tensor, num_classes: int) -> int | None:
        if not ops.checks_on_host(labels) or labels.numel() == 0:
            return None  # on an accelerator the kernel marks such rows NaN instead
        values = labels.numpy()  # no copy; and NumPy has min/max for every unsigned dtype
        if values.min() >= 0 and values.max() < num_classes:
            return None
        return int(values[(values < 0) | (values >= num_classes)][0])

    def reduce(self, loss: torch.Tensor, reduction: str) -> torch.Tensor:
        total = loss.sum(dtype=torch.float32) if loss.dtype in _HALF else loss.sum()
        if reduction == "mean":
            total = total / loss.numel()
        return total.to(loss.dtype)

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: torch.Tensor, axis: int) -> torch.Tensor:
        if logits.dtype in _HALF:
            return torch.softmax(logits, axis, dtype=torch.float32).to(logits.dtype)
        return torch.softmax(logits, axis)

    def log_softmax(self, logits: torch.Tensor, axis: int) -> torch.Tensor:
        if logits.dtype in _HALF:
            return torch.log_softmax(logits, axis, dtype=torch.float32).to(logits.dtype)
        return torch.log_softmax(logits, axis)

    def softmax_cross_entropy_with_logits(
        self, labels: torch.Tensor, logits: torch.Tensor, axis: int
    ) -> torch.Tensor:
        loss = ops.dense_loss(_compute(labels), _compute(logits), axis)
        return loss.to(logits.dtype) if logits.dtype in _HALF else loss

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: torch.Tensor, logits: torch.Tensor, axis: int
    ) -> torch.Tensor:
        shape, num_classes = logits.shape, logits.shape[axis]
        x = _compute(logits)
        target = labels if labels.dtype == torch.int64 else labels.long()
        moved = axis != logits.ndim - 1 or logits.ndim > 2
        if moved:  # F.cross_entropy takes [C], [N, C] or [N, C, rest]: classes to dim 1
            outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
            x = x.reshape((outer, num_classes) + ((inner,) if inner != 1 else ()))
            target = target.reshape(x.shape[:1] + x.shape[2:])  # views when contiguous
        if ops.checks_on_host(labels):  # the API layer has checked the range
            loss = F.cross_entropy(x, target, reduction="none")  # wants int64 (or uint8)
        else:  # out of range gives NaN, without a host sync or a device-side assert
            bad = (target < 0) | (target >= num_classes)
            loss = F.cross_entropy(x, target.masked_fill(bad, 0), reduction="none")
            loss = loss.masked_fill(bad, float("nan"))
        if moved:
            loss = loss.reshape(shape[:axis] + shape[axis + 1 :])
        return loss.to(logits.dtype) if logits.dtype in _HALF else loss

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        if mode != "eager":
            raise ValueError(f"torch: unknown mode {mode!r}")
        return self.to_numpy(fn(*[_from_numpy(a) for a in args]))

    def value_and_grad(
        self, mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        if mode != "eager":
            raise ValueError(f"torch: unknown mode {mode!r}")
        y, x = _from_numpy(labels), _from_numpy(logits).requires_grad_(True)
        inputs = (y.requires_grad_(True), x) if y.is_floating_point() else (x,)
        value = fn(y, x)
        grads = torch.autograd.grad(value.sum(), inputs, allow_unused=True)
        dlogits = grads[-1] if grads[-1] is not None else torch.zeros_like(x)
        dlabels = grads[0] if len(grads) == 2 else None
        return (
            self.to_numpy(value),
            None if dlabels is None else self.to_numpy(dlabels),
            self.to_numpy(dlogits),
        )
