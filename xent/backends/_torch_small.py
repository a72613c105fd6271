"""Small plain calls in one step: the public functions' fast path for torch tensors.

At 2x3 a loss costs torch one kernel (~2 us) and xent's general path about as much again in
Python: the owner lookup, reading shapes and dtypes through the backend protocol, the
checks of ``xent._validate``, the range check (about 8 us at 128x1000 too). A call with no
options whose arguments are plainly valid (float32/float64 logits on the CPU, classes on the
last of two axes, ``[N]`` int64 labels in range, or dense labels of the logits' shape and
dtype up to ``_torch_eager.NATIVE`` elements, plain eager code) is the general path's own
kernel call, so it is made here directly, after checks that only *accept*: anything else
returns None, and the general path runs, checks and raises as usual (the same errors, the
same messages).

The kernels are those the general path calls for such input: sparse, ``F.cross_entropy``'s
(``_torch._sparse``, reduced in the kernel as ``sparse_softmax_cross_entropy_reduced``);
dense, ``F.cross_entropy(logits, probs)``, whose value is checked for NaN: a NaN (a zero
label at a ``-inf`` logit, or a real NaN row) leaves the call to the general path, which
gives the masked class its finite loss (``_torch_eager_kept.plain_loss``). A dense ``"sum"`` or
``"mean"`` is reduced in that kernel too (the general path sums the rows' losses after it:
the same to an ulp, in another order).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as forward_ad
from torch._C._functorch import is_legacy_batchedtensor as _legacy_batched

from xent.backends._torch_eager import NATIVE, SMALL, has_nan

MAX_ROWS = 64  # up to this many sparse labels, read on the host (faster than torch's amin)
_IGNORED = -100  # the kernel's ignore_index: any other negative label is its IndexError
_INT64 = torch.int64
_TENSOR = torch.Tensor
_FULL = (torch.float32, torch.float64)
#: the kernel's reduction codes (``weighted_mean`` without weights is the mean)
_CODES: dict[Any, int] = {"none": 0, "mean": 1, "weighted_mean": 1, "sum": 2}
_cross_entropy: Any = torch._C._nn.cross_entropy_loss
_transforms_active = torch._C._are_functorch_transforms_active
_is_compiling = torch.compiler.is_compiling


def sparse(labels: Any, logits: torch.Tensor, axis: object, reduction: object) -> Any:
    """The sparse loss, or None where the general path must run.

    Every check is one that only accepts, spelled for the ~1 us they may cost in all. No
    label may be the kernel's ``ignore_index`` (-100: up to 64 labels are read on the host,
    more by ``amin``); the kernel checks the rest and raises, which sends the call to the
    general path to raise its own error: ``IndexError`` for a label >= C or another
    negative one (also where C is 0), ``ValueError`` for a batch mismatch,
    ``RuntimeError`` for labels not int64. Labels of another rank or dtype do not read as
    a flat list of ints (float labels of the logits' shape would be probabilities to the
    kernel); an unhashable reduction is no key."""
    if (type(labels) is not _TENSOR or logits.dtype not in _FULL or type(axis) is not int
            or not (axis == -1 or axis == 1) or logits.ndim != 2  # axis not True, not 1.0
            or not labels.is_cpu or _transforms_active() or _is_compiling()):
        return None
    try:
        code = _CODES.get(reduction)
        if code is None:
            return None
        if labels.numel() <= MAX_ROWS:
            values = labels.tolist()  # ints: other types and nested lists are refused
            if not values or type(values[0]) is not int or _IGNORED in values:
                return None
        elif labels.dtype is not _INT64 or labels.ndim != 1 or int(labels.amin()) < 0:
            return None  # (float labels of the logits' shape would be probabilities to F)
        return _cross_entropy(logits, labels, None, code, _IGNORED, 0.0)
    except (TypeError, IndexError, ValueError, RuntimeError):  # what the API rejects
        return None


def dense(labels: Any, logits: torch.Tensor, axis: object, reduction: object) -> Any:
    """The dense loss, or None where the general path must run (also where it is NaN)."""
    if (type(labels) is not _TENSOR or type(axis) is not int or not (axis == -1 or axis == 1)
            or type(reduction) is not str):
        return None
    dtype = logits.dtype
    if (labels.dtype is not dtype or dtype not in _FULL or not (labels.is_cpu and logits.is_cpu)
            or _transforms_active() or _is_compiling() or forward_ad._current_level >= 0
            or _legacy_batched(logits) or _legacy_batched(labels)):
        return None
    shape = logits.shape
    code = _CODES.get(reduction)
    if code is None or len(shape) != 2 or labels.shape != shape or shape[1] == 0:
        return None
    size = shape[0] * shape[1]
    if size > NATIVE:
        return None
    loss = _cross_entropy(logits, labels, None, code, _IGNORED, 0.0)
    if size > SMALL:
        return None if has_nan(loss, size) else loss  # NaN: the general path's fix
    total = loss.item() if code else sum(loss.tolist())  # has_nan's host read, inline
    return loss if total == total else None
