"""Softmax cross-entropy of rows whose classes are split over ranks: local tensors in, the
collectives between the steps visible at the call site (Megatron-LM's vocab-parallel shape).

Each rank holds a block of classes ``x`` (``first, ..., first + C_local - 1``, possibly none)
of every row it computes; ``groups`` are the mesh dimensions that split the class axis (one
all-reduce per dimension and round; none at all when the class axis is whole). Per row:

    round 1   M = max_c x_c                                  all-reduce MAX of [rows]
    local     r = sum_c exp(x_c - M), without this block's own maximum's term where that
                  maximum is M;  k = 1 where it was left out, else 0
              b = sum_c y_c (M - x_c)  (>= 0; 0 where y_c = 0)   n = sum_c y_c
    round 2   (r, k, b, n) summed                             one all-reduce SUM of [rows, 4]
    loss      b + log1p(r + (k - 1)) n

Each block holding the maximum leaves its ``exp(0) = 1`` out of ``r``, and ``k - 1`` (an
exact integer) puts back all of them but one, so ``log1p`` adds that one: the NumPy
reference's ``(m - x_c) + log1p(s')`` (``_numpy_kernels``, ``_dask_kernels``), a sum of
non-negative terms, accurate to a few eps relative however the classes are split. A NaN
logit counts as ``+inf`` for the maximum, so a row with a NaN or ``+inf`` logit, or with
every logit ``-inf``, is NaN on every rank (``M - M``); no rank ever raises between
collectives.

Gradients use only what the forward pass saved on this rank (its logits and labels, and the
row's ``M`` and ``log1p(...)``): ``d/dx = g (softmax n - y)``, ``d/dy = g (lse - x)`` for
the losses, no collective; ``log_softmax`` and ``softmax`` need the row sum of the incoming
gradient (one all-reduce). float16 and bfloat16 are computed in float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed._functional_collectives as funcol
from torch.autograd.function import once_differentiable

Groups = tuple[tuple[Any, int], ...]  # (DeviceMesh, mesh dim) of each split of the classes
_HALF = (torch.float16, torch.bfloat16)
_INF = float("inf")


def _compute(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _HALF else x


def all_reduce(x: torch.Tensor, op: str, groups: Groups) -> torch.Tensor:
    """``x`` reduced (``"max"`` or ``"sum"``) over the ranks that share this rank's rows."""
    for group in groups:
        x = funcol.all_reduce(x, op, group)
    return x.wait() if isinstance(x, funcol.AsyncCollectiveTensor) else x


# -- the steps ---------------------------------------------------------------------------------
def row_max(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This block's row maximum (NaN counts as ``+inf``; ``-inf`` for a block without
    classes) and where it is, keeping ``dim``."""
    if x.shape[dim] == 0:
        shape = x.shape[:dim] + (1,) + x.shape[dim + 1 :]
        return x.new_full(shape, -_INF), x.new_zeros(shape, dtype=torch.long)
    top, at = x.max(dim, keepdim=True)
    return top.nan_to_num(nan=_INF, posinf=_INF, neginf=-_INF), at


def rest(x: torch.Tensor, dim: int, top: torch.Tensor, mine: torch.Tensor,
         at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r, k)`` of this block: ``sum exp(x - M)`` without the term of its own maximum where
    that is the row's maximum ``M`` (``mine``: this block's maximum), and whether it was
    left out (the ranks' ``k`` sum to the number of terms left out)."""
    held = mine == top
    e = (x - top).exp_()
    if e.shape[dim]:
        e.scatter_(dim, at, torch.where(held, 0.0, e.gather(dim, at)))
    return e.sum(dim), held.squeeze(dim).to(e.dtype)


def label_term(y: torch.Tensor, x: torch.Tensor, dim: int,
               top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, n)`` of this block: ``sum y (M - x)`` and ``sum y``. ``nansum`` drops the
    ``0 * inf`` of a zero label at a ``-inf`` logit (exactly 0); a row whose ``M`` is not
    finite is NaN anyway, and NaN labels make ``n`` NaN."""
    return (top - x).mul_(y).nansum(dim), y.sum(dim)


def picked_term(labels: torch.Tensor, x: torch.Tensor, dim: int, top: torch.Tensor,
                first: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(b, local, here)``: ``M - x[label]`` where this block holds the label (else 0), the
    label's index in the block (clamped) and whether it is here."""
    local = labels.long() - first
    here = (local >= 0) & (local < x.shape[dim])
    local = local.clamp(0, max(x.shape[dim] - 1, 0))
    if x.shape[dim] == 0:
        return top.new_zeros(labels.shape), local, here
    picked = x.gather(dim, local.unsqueeze(dim)).squeeze(dim)
    return torch.where(here, top.squeeze(dim) - picked, 0.0), local, here


def row_statistics(x: torch.Tensor, dim: int,
                   groups: Groups) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global ``(M, r, k)`` of each row for ``softmax`` and ``log_softmax``: the maximum
    (round 1), then the sum below it and the count of ties (round 2)."""
    mine, at = row_max(x, dim)
    top = all_reduce(mine, "max", groups)                                             # round 1
    r, k = rest(x, dim, top, mine, at)
    r, k = all_reduce(torch.stack([r, k], -1), "sum", groups).unbind(-1)              # round 2
    return top, r, k


def log_norm(top: torch.Tensor, r: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """``logsumexp - M = log1p(r + (k - 1))`` from the summed ``r`` and ``k``, the number of
    terms ``exp(0) = 1`` left out of ``r`` (``k - 1``, an exact integer, puts back all but
    one), keeping ``dim``; NaN where ``M`` is not finite."""
    return torch.log1p(r + (k - 1.0)).unsqueeze(dim) + (top - top)


# -- one autograd node per function ----------------------------------------------------------
class DenseLoss(torch.autograd.Function):
    """``sum_c y_c (lse - x_c)`` of the rows of this rank's block of classes."""

    @staticmethod
    def forward(ctx: Any, labels: torch.Tensor, logits: torch.Tensor, dim: int,
                groups: Groups) -> torch.Tensor:
        x, y = _compute(logits), _compute(labels)
        mine, at = row_max(x, dim)
        top = all_reduce(mine, "max", groups)                                         # round 1
        r, k = rest(x, dim, top, mine, at)
        b, n = label_term(y, x, dim, top)
        r, k, b, n = all_reduce(torch.stack([r, k, b, n], -1), "sum", groups).unbind(-1)  # 2
        norm = log_norm(top, r, k, dim)
        ctx.dim = dim
        ctx.save_for_backward(labels, logits, top, norm, n.unsqueeze(dim))
        return (b + norm.squeeze(dim) * n).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        labels, logits, top, norm, n = ctx.saved_tensors
        x, g = _compute(logits), _compute(grad).unsqueeze(ctx.dim)
        dy = dx = None
        if ctx.needs_input_grad[1]:  # softmax * sum(labels) - labels
            dx = (x - (top + norm)).exp_().mul_(n).sub_(_compute(labels)).mul_(g)
            dx = dx.to(logits.dtype)
        if ctx.needs_input_grad[0]:  # lse - x (+inf at a masked class: its true value)
            dy = (((top - x) + norm) * g).to(labels.dtype)
        return dy, dx, None, None


class SparseLoss(torch.autograd.Function):
    """``lse - x[label]`` of the rows of this rank's block of classes ``first, ...``; a label
    outside ``[0, num_classes)`` gives NaN on every rank (and no gradient)."""

    @staticmethod
    def forward(ctx: Any, labels: torch.Tensor, logits: torch.Tensor, dim: int, first: int,
                num_classes: int, groups: Groups) -> torch.Tensor:
        x = _compute(logits)
        mine, at = row_max(x, dim)
        top = all_reduce(mine, "max", groups)                                         # round 1
        r, k = rest(x, dim, top, mine, at)
        b, local, here = picked_term(labels, x, dim, top, first)
        r, k, b = all_reduce(torch.stack([r, k, b], -1), "sum", groups).unbind(-1)    # round 2
        norm = log_norm(top, r, k, dim)
        bad = (labels < 0) | (labels >= num_classes)
        ctx.dim = dim
        ctx.save_for_backward(logits, top, norm, local, here, bad)
        return (b + norm.squeeze(dim)).masked_fill(bad, float("nan")).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        logits, top, norm, local, here, bad = ctx.saved_tensors
        dim = ctx.dim
        g = _compute(grad).masked_fill(bad, 0.0).unsqueeze(dim)
        dx = (_compute(logits) - (top + norm)).exp_()
        if dx.shape[dim]:  # softmax - one_hot(label), where this block holds the label
            dx.scatter_add_(dim, local.unsqueeze(dim), -here.unsqueeze(dim).to(dx.dtype))
        return None, dx.mul_(g).to(logits.dtype), None, None, None, None


class LogSoftmax(torch.autograd.Function):
    """``(x - M) - log1p(r + (k - 1))``; backward ``g - softmax * sum_c g_c`` (one all-reduce)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, dim: int, groups: Groups) -> torch.Tensor:
        x = _compute(logits)
        top, r, k = row_statistics(x, dim, groups)
        out = (x - top).sub_(log_norm(top, r, k, dim))
        ctx.dim, ctx.groups = dim, groups
        ctx.save_for_backward(out)
        return out.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (out,) = ctx.saved_tensors
        g = _compute(grad)
        total = all_reduce(g.sum(ctx.dim, keepdim=True), "sum", ctx.groups)
        return out.exp().mul_(-total).add_(g).to(grad.dtype), None, None


class Softmax(torch.autograd.Function):
    """``exp(x - M) / (r + k)``; backward ``p (g - sum_c g_c p_c)`` (one all-reduce)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, dim: int, groups: Groups) -> torch.Tensor:
        x = _compute(logits)
        top, r, k = row_statistics(x, dim, groups)
        out = (x - top).exp_().div_((r + k).unsqueeze(dim)).add_(top - top)
        ctx.dim, ctx.groups = dim, groups
        ctx.save_for_backward(out)
        return out.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (out,) = ctx.saved_tensors
        g = _compute(grad)
        dot = all_reduce((g * out).sum(ctx.dim, keepdim=True), "sum", ctx.groups)
        return (g - dot).mul_(out).to(grad.dtype), None, None
