"""The PyTorch backend: torch's fused kernels plus what the semantics need.

``softmax``, ``log_softmax`` and the sparse loss are torch's own kernels
(``F.cross_entropy`` for the sparse loss). The dense loss needs more: torch computes
``-sum_c labels_c * log_softmax_c``, and a masked class (``labels_c == 0`` at a ``-inf``
logit) makes that ``0 * -inf = NaN``. ``_torch_ops`` sums the products with ``nansum``, puts
back the rows that really are NaN, and gives the analytic gradients through one custom
autograd function. Accuracy is torch's (a few eps of the loss's scale; see ``_torch_ops``).

float16 and bfloat16 are computed in float32 and returned in their own dtype. Results stay
on the input's device, and nothing syncs with an accelerator: sparse labels are
range-checked on CPU, in eager code and under ``torch.func`` transforms; on accelerators
and under ``torch.compile`` out-of-range rows give NaN. Every function works under
``torch.autograd`` (double backward, ``is_grads_batched``), forward-mode AD, ``torch.func``
and ``torch.compile(fullgraph=True)``; ``_torch_modes`` runs them for the conformance suite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xent.backends import _torch_context as context
from xent.backends import _torch_eager_kept as eager_kept
from xent.backends import _torch_eager_options as eager_options
from xent.backends import _torch_modes
from xent.backends import _torch_ops as ops
from xent.backends import _torch_small as small
from xent.backends._base import Backend
from xent.backends._torch_convert import from_numpy, to_numpy, torch_dtype
from xent.backends._torch_options import TorchArrayOps

_HALF = (torch.float16, torch.bfloat16)
_transforms_active = torch._C._are_functorch_transforms_active
#: the labels ``few_labels`` last read on the host, which the API then range-checked: an
#: identity test tells ``_sparse`` they live on the host (0.05 us against 0.4 for
#: ``checks_on_host``); any other tensor is looked at. A strong reference, to at most 64
#: elements, so that no other tensor can take its ``id``.
_read_on_host: list[torch.Tensor | None] = [None]
# every dtype's name up front: a cache filled while torch.compile traces would change under
# the compiled code's guards and cost it a recompile
_DTYPE_NAMES: dict[torch.dtype, str] = {
    d: str(d).removeprefix("torch.") for d in vars(torch).values() if isinstance(d, torch.dtype)
}


def _compute(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the math runs in (float32 for the 16-bit floats)."""
    return x.float() if x.dtype in _HALF else x


class TorchBackend(TorchArrayOps, Backend):
    """torch tensors on any device, under autograd, ``torch.func`` and ``torch.compile``."""

    name = "torch"
    module = "torch"
    modes = _torch_modes.MODES
    transform_modes = _torch_modes.TRANSFORM_MODES
    tracing_modes = _torch_modes.TRACING_MODES
    #: The cells (cases, dtypes) the project's test suite runs in a transform mode where all
    #: of them would take too long; ``xent conformance`` runs every cell in every mode.
    transform_test_subset = _torch_modes.SUITE_CELLS
    captured_option_limits = {"compile": (("jvp_softmax", "jvp_log_softmax", "jvp_loss",
                                           "jvp_sparse_loss"), (
        "torch 2.13's dynamo fails its own guard on a NumPy array captured by a compiled "
        "torch.func.jvp; captured tensors work (tests/test_torch_transforms.py)"))}
    has_autodiff = True
    cheap_ignore_index = True  # F.cross_entropy skips the rows (see _sparse)
    dtypes = ("float16", "bfloat16", "float32", "float64")

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype_name(self, x: torch.Tensor) -> str:
        name = _DTYPE_NAMES.get(x.dtype)
        return str(x.dtype).removeprefix("torch.") if name is None else name

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> torch.Tensor:
        tensor = value if isinstance(value, torch.Tensor) else from_numpy(value)
        return tensor.to(
            device=None if like is None else like.device,
            dtype=None if dtype is None else torch_dtype(dtype),
        )

    def adopt(self, value: Any, like: torch.Tensor) -> torch.Tensor | None:
        if not torch.compiler.is_compiling():
            return None
        # dynamo cannot read an ndarray's dtype or flags, but converts it to a tensor
        return torch.as_tensor(value, device=like.device)

    def cast(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        return x if self.dtype_name(x) == dtype else x.to(torch_dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return to_numpy(x)

    def stop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    def first_out_of_range(self, labels: torch.Tensor, num_classes: int) -> int | None:
        few = self.few_labels(labels)
        if few is not None:  # a few labels: in Python
            return next((value for value in few if not 0 <= value < num_classes), None)
        held = context.host_values(labels)
        if held is None or held.numel() == 0:
            return None  # on an accelerator or while compiling the kernel marks such rows NaN
        if held.dtype in _ROW_INDICES:  # torch's one kernel: measured faster than NumPy's
            low, high = torch.aminmax(held)  # two (which also slowed the next torch kernels)
            if int(low) >= 0 and int(high) < num_classes:
                return None
        values = context.to_host_numpy(held)  # NumPy has min/max for every unsigned dtype
        if values.min() >= 0 and values.max() < num_classes:
            return None
        return int(values[(values < 0) | (values >= num_classes)][0])

    def plain_path(self, logits_type: type) -> Any:
        return small if logits_type in (torch.Tensor, torch.nn.Parameter) else None

    def few_labels(self, labels: torch.Tensor) -> list[int] | None:
        if labels.numel() > 64 or _transforms_active():
            return None
        held = context.host_values(labels)
        if held is None:
            return None  # on an accelerator or while compiling
        _read_on_host[0] = labels  # the API range-checks them now: _sparse need not look again
        # (a view costs more than the check: 1-D labels are read as they are)
        return held.tolist() if held.ndim == 1 else held.reshape(-1).tolist()

    def reduce(self, loss: torch.Tensor, reduction: str) -> torch.Tensor:
        if loss.dtype not in _HALF:  # torch's mean is its sum over the count, in one call
            return loss.sum() if reduction == "sum" else loss.mean()
        total = loss.sum(dtype=torch.float32)
        return (total if reduction == "sum" else total / loss.numel()).to(loss.dtype)

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
        return _sparse(labels, logits, axis)

    def sparse_softmax_cross_entropy_reduced(
        self, labels: torch.Tensor, logits: torch.Tensor, axis: int, options: Any,
        reduction: str,
    ) -> torch.Tensor | None:
        """torch's kernel reduces in the same call (``F.cross_entropy``'s ``"sum"`` and
        ``"mean"``: 7% of a 4096x1000 call, and one kernel fewer at 2x3) where its
        denominator is xent's: the rows not ignored, or with class weights (and no row
        weights) the sum of the labels' class weights, which is ``"weighted_mean"``.
        float32 and float64 logits (16-bit ones reduce their rounded losses, as without),
        with labels range-checked on the host."""
        if logits.dtype in _HALF or not _checked_on_host(labels):
            return None  # (off the host, out-of-range rows are NaN before any reduction)
        weight, smoothing, ignore_index = None, 0.0, None
        if options is not None:
            smoothing = options.label_smoothing if options.smooths else 0.0
            if (options.where is not None or options.weights is not None
                    or type(smoothing) is not float):
                return None
            weight, ignore_index = options.class_weights, options.ignore_index
        if weight is not None and reduction == "mean":
            return None  # torch's mean with class weights is xent's weighted_mean
        return _sparse(labels, logits, axis, weight, smoothing, ignore_index,
                       _SUM if reduction == "sum" else _MEAN)

    def softmax_cross_entropy_with_options(
        self, labels: torch.Tensor, logits: torch.Tensor, axis: int, options: Any
    ) -> torch.Tensor:
        """``where``, label smoothing and class weights in one pass
        (``_torch_eager_kept``), else built chunk by chunk (``_torch_eager_options``), in
        plain eager code on the CPU; elsewhere the composition."""
        x = _compute(logits)
        dressing = eager_options.dressing(labels, x, axis, options, sparse=False)
        if dressing is None:
            return super().softmax_cross_entropy_with_options(labels, logits, axis, options)
        loss = eager_kept.loss(_compute(labels), x, axis, dressing)
        return _weighted(loss.to(logits.dtype) if logits.dtype in _HALF else loss, options)

    def sparse_softmax_cross_entropy_with_options(
        self, labels: torch.Tensor, logits: torch.Tensor, axis: int, options: Any
    ) -> torch.Tensor:
        """Class weights, ``ignore_index`` and label smoothing in torch's own fused kernel
        (``F.cross_entropy``: ``(1 - e) w_t (lse - x_t) + e / C sum_c w_c (lse - x_c)``,
        0 in an ignored row: ``xent._options``' formula with one-hot labels); with
        ``where``, one pass from the maximum over every class (``_torch_eager_kept``) or the
        chunked eager kernel (plain eager code on the CPU), else the composition."""
        smoothing = options.label_smoothing if options.smooths else 0.0
        if options.where is not None or type(smoothing) is not float:
            x, dressing = _compute(logits), None
            if options.where is not None:
                dressing = eager_options.dressing(labels, x, axis, options, sparse=True)
            if dressing is None:
                return super().sparse_softmax_cross_entropy_with_options(labels, logits,
                                                                         axis, options)
            loss = eager_kept.loss(labels, x, axis, dressing)
            return _weighted(loss.to(logits.dtype) if logits.dtype in _HALF else loss,
                             options)
        loss = _sparse(labels, logits, axis, options.class_weights, smoothing,
                       options.ignore_index)
        return _weighted(loss, options)

    # -- conformance hooks: eager, and the transforms vmap and compile (see _torch_modes) ---
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        return _torch_modes.run(mode, fn, *args)

    def value_and_grad(
        self, mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return _torch_modes.value_and_grad(mode, fn, labels, logits)

    def jvp(
        self, mode: str, fn: Callable[..., Any], args: tuple[np.ndarray, ...],
        tangents: tuple[np.ndarray | None, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        return _torch_modes.jvp(mode, fn, args, tangents)

    def release(self) -> None:
        """Forget the hooks' compiled functions (``_torch_modes.release``)."""
        _torch_modes.release()


def _weighted(loss: torch.Tensor, options: Any) -> torch.Tensor:
    """The per-row ``loss`` times the row weights, if any."""
    return loss if options.weights is None else loss * options.weights


#: ``F.cross_entropy`` without its Python wrapper (which costs about 1 us of a 2x3 call):
#: ``(input, target, weight, reduction (0: none), ignore_index, label_smoothing)``; like
#: every generated binding it still hands tensor subclasses to ``__torch_function__``
_cross_entropy: Any = torch._C._nn.cross_entropy_loss

#: torch's ``ignore_index`` when xent's is None: a label equal to it is out of range, which
#: the API has checked on the host (elsewhere out-of-range rows are NaN before the kernel)
_NO_IGNORE = -100
_INT64 = torch.int64
_ROW_INDICES = (torch.int64, torch.int32)
_NONE, _MEAN, _SUM = 0, 1, 2  # the kernel's reduction codes


def _checked_on_host(labels: torch.Tensor) -> bool:
    """Whether the API has range-checked ``labels`` on the host (the last ones
    ``few_labels`` read are known by identity)."""
    return labels is _read_on_host[0] or context.checks_on_host(labels)


def _sparse(labels: torch.Tensor, logits: torch.Tensor, axis: int,
            weight: torch.Tensor | None = None, smoothing: float = 0.0,
            ignore_index: int | None = None, reduction: int = _NONE) -> torch.Tensor:
    """The sparse loss by ``F.cross_entropy`` along ``axis``, with class weights ``weight``
    (``[C]``), label smoothing and ``ignore_index`` (row loss 0, gradient 0): per row, or
    reduced by the kernel (``reduction``: ``_MEAN`` or ``_SUM``, float32/float64 only, for
    labels :func:`_checked_on_host`)."""
    if (labels is _read_on_host[0] and axis == 1 and weight is None and ignore_index is None
            and logits.ndim == 2 and labels.dtype is _INT64 and logits.dtype not in _HALF):
        return _cross_entropy(logits, labels, None, reduction, _NO_IGNORE, smoothing)
    shape, num_classes = logits.shape, logits.shape[axis]
    x = _compute(logits)
    if weight is not None and weight.dtype != x.dtype:
        weight = weight.to(x.dtype)
    target = labels if labels.dtype == torch.int64 else labels.long()
    moved = axis != logits.ndim - 1 or logits.ndim > 2
    if moved:  # F.cross_entropy takes [C], [N, C] or [N, C, rest]: classes to dim 1
        outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
        x = x.reshape((outer, num_classes) + ((inner,) if inner != 1 else ()))
        target = target.reshape(x.shape[:1] + x.shape[2:])  # views when contiguous
    ignored = _NO_IGNORE if ignore_index is None else ignore_index
    if ignore_index is not None:
        x = _ignored_rows_read_as_zero(x, target, ignore_index)
    if reduction != _NONE or _checked_on_host(labels):  # (reduced: checked by the caller)
        loss = _cross_entropy(x, target, weight, reduction, ignored, smoothing)
        if reduction != _NONE:
            return loss
    else:  # out of range gives NaN, without a host sync or a device-side assert
        bad = (target < 0) | (target >= num_classes)
        if ignore_index is not None:
            bad &= target != ignore_index
        loss = F.cross_entropy(x, target.masked_fill(bad, 0), weight=weight,
                               ignore_index=ignored, reduction="none",
                               label_smoothing=smoothing)
        loss = loss.masked_fill(bad, float("nan"))
    if moved:
        loss = loss.reshape(shape[:axis] + shape[axis + 1 :])
    return loss.to(logits.dtype) if logits.dtype in _HALF else loss


def _ignored_rows_read_as_zero(x: torch.Tensor, target: torch.Tensor,
                               ignore_index: int) -> torch.Tensor:
    """``x`` whose rows labelled ``ignore_index`` get gradient exactly 0. torch's is
    ``0 - p * 0``: 0 where the row is finite, NaN where it is not. So in plain eager code on
    the host those rows are looked at (only they) and zeroed only if one is not finite;
    under transforms, ``torch.compile`` and on accelerators they always are."""
    compiling = torch.compiler.is_compiling()
    if not x.requires_grad and (compiling or not context.transformed(x)):
        return x  # no gradient: the loss of an ignored row is 0 whatever its logits
    ignored = target == ignore_index
    if not compiling and x.is_cpu and not context.transformed(x, target):
        if not ignored.any():
            return x
        values = x.detach()  # only looked at: no autograd node
        if x.ndim == 2:  # index_select copies whole rows: 3x faster than a boolean index
            rows = values.index_select(0, ignored.nonzero().squeeze(1))
        else:
            rows = values.movedim(1, -1)[ignored] if x.ndim > 1 else values[ignored]
        if rows.amax(-1).isfinite().all():
            return x
    return x.masked_fill(ignored.unsqueeze(1) if x.ndim > 1 else ignored, 0.0)
