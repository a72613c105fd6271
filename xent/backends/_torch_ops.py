"""What the torch backend adds to torch's kernels: the dense loss.

**Dense loss.** ``loss = -sum_c labels_c * log_softmax(logits)_c`` over ``dim``, where a
class with ``labels_c == 0`` adds exactly 0 even at ``logits_c == -inf`` (torch's
``0 * -inf`` is NaN). ``log_softmax`` is torch's fused kernel; the products are summed
with ``nansum``, which drops the masked classes' ``0 * -inf``. ``nansum`` would also drop
real NaNs, so they are put back per row: a NaN, ``+inf`` or all ``-inf`` logit row makes
its whole ``log_softmax`` row NaN (torch subtracts a non-finite maximum), so its first
element tells; NaN labels make ``sum(labels)``, which the gradient needs anyway, NaN.
Every other NaN product is ``0 * -inf``.

Derivatives, with ``p = exp(log_p)`` and ``s = sum(labels)`` from the forward pass:

- reverse: ``d/dlogits = p * s - labels`` (0 at a masked class, so finite wherever the
  loss is) and ``d/dlabels = -log_p = logsumexp - logits`` (``+inf`` at a masked class,
  its true value);
- forward: ``d loss = -sum_c labels_c * d log_p_c - sum_c log_p_c * d labels_c`` with
  ``d log_p = d logits - sum_k p_k * d logits_k``; a class whose label tangent is 0 adds 0
  (not ``-inf * 0``).

The autograd node also returns ``log_p`` and ``s`` as (hidden) outputs and has rules for
them, so that derivatives of these derivatives (double backward, ``torch.func.hessian``,
``jvp`` of ``grad``) flow through the saved tensors. Under ``torch.func`` transforms,
forward-mode AD and ``torch.compile`` everything is out of place; plain eager autograd
keeps the in-place kernels (one buffer fewer per pass).

Accuracy is torch's: ``log_softmax`` computes ``logsumexp - x_max`` as
``log(sum exp(x - x_max))``, a few eps *absolute*, so a loss far below eps (a confident,
correct prediction) comes out 0. Recomputing such rows as the NumPy reference does costs
1.5-2.5x on a trained model's batches, where most rows are confident; the gradients, which
training uses, are accurate either way. ``Backend.relative_accuracy`` is False here.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from xent.backends import _torch_eager_kept as eager_kept
from xent.backends._torch_context import transformed

_NAN = float("nan")


def _forward(
    labels: torch.Tensor, logits: torch.Tensor, dim: int, keep: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, log_softmax, sum(labels))``; ``log_softmax`` is scratch unless ``keep``."""
    log_p = torch.log_softmax(logits, dim)
    total = labels.sum(dim)
    nan_rows = log_p.select(dim, 0).isnan() | total.isnan()
    products = labels * log_p if keep else log_p.mul_(labels)  # in place: one less buffer
    loss = products.nansum(dim).neg_().masked_fill_(nan_rows, _NAN)
    return loss, log_p, total


def _traced_loss(labels: torch.Tensor, logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The loss in plain ops, for ``torch.compile`` without autograd: there forward-mode AD
    (``torch.func.jvp`` inside the compiled function) differentiates these ops, as dynamo
    cannot use a custom forward rule. Two tangents are put right: a label tangent at a
    masked class, ``(lse - x_c) * d labels_c = +-inf``, which ``nansum`` would drop with its
    ``0 * -inf`` product; and NaN rows, whose tangent stays NaN."""
    log_p = torch.log_softmax(logits, dim)
    total = labels.sum(dim)
    loss = (labels * log_p).nansum(dim).neg()
    big = torch.finfo(log_p.dtype).max  # labels * big * big: 0 here, tangent d labels * inf
    masked = (labels == 0) & (log_p == -math.inf)
    loss = loss + torch.where(masked, labels * big * big, 0).sum(dim)
    nan_rows = log_p.select(dim, 0).isnan() | total.isnan()
    return torch.where(nan_rows, log_p.select(dim, 0) * total, loss)  # NaN with a NaN tangent


class _DenseLoss(torch.autograd.Function):
    """The dense loss as one autograd node, ``(labels, logits, dim) -> (loss, log_p, s)``,
    with reverse and forward rules (``torch.func`` and ``torch.compile`` ready)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        labels: torch.Tensor, logits: torch.Tensor, dim: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _forward(labels, logits, dim, keep=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        labels, _, ctx.dim = inputs
        _, log_p, total = output  # outputs, not ctx attributes: torch.func must see them
        ctx.set_materialize_grads(False)  # no zero gradients for the unused log_p and s
        ctx.save_for_backward(labels, log_p, total)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor | None, grad_log_p: torch.Tensor | None,
        grad_total: torch.Tensor | None,
    ) -> tuple[Any, ...]:
        labels, log_p, total = ctx.saved_tensors
        dim, (want_labels, want_logits) = ctx.dim, ctx.needs_input_grad[:2]
        dlabels = dlogits = None
        if grad is not None:
            g = grad.unsqueeze(dim)
            in_place = not (
                torch.is_grad_enabled() or torch.compiler.is_compiling()
                or transformed(g, labels, log_p)
            )
            if want_logits and in_place:  # plain eager autograd: one buffer
                dlogits = log_p.exp().mul_(g * total.unsqueeze(dim))
                dlogits.addcmul_(labels, g, value=-1)
            elif want_logits:
                dlogits = log_p.exp() * (g * total.unsqueeze(dim)) - labels * g
            if want_labels:
                dlabels = log_p * g.neg()
        if grad_log_p is not None:  # only in derivatives of derivatives
            p = log_p.exp()
            through = grad_log_p - p * grad_log_p.sum(dim, keepdim=True)
            dlogits = through if dlogits is None else dlogits + through
        if grad_total is not None:
            through = grad_total.unsqueeze(dim).expand_as(labels)
            dlabels = through if dlabels is None else dlabels + through
        return (dlabels if want_labels else None), (dlogits if want_logits else None), None


class _DenseLossForwardMode(_DenseLoss):
    """:class:`_DenseLoss` with its forward-mode rule (``torch.compile`` cannot trace an
    autograd function that has one: it sees :class:`_DenseLoss`)."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        _DenseLoss.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], output[1], output[2])

    @staticmethod
    def jvp(
        ctx: Any, dlabels: torch.Tensor | None, dlogits: torch.Tensor | None, _: Any
    ) -> tuple[torch.Tensor | None, ...]:
        labels, log_p, total = ctx.saved_tensors
        dim = ctx.dim
        dloss = dlog_p = dtotal = None
        if dlogits is not None:
            dlog_p = dlogits - (log_p.exp() * dlogits).sum(dim, keepdim=True)
            dloss = -(labels * dlog_p).sum(dim)
        if dlabels is not None:
            dtotal = dlabels.sum(dim)
            # nansum: a class whose label tangent is 0 adds 0 even at log_p = -inf
            through = (log_p * dlabels).nansum(dim)
            dloss = -through if dloss is None else dloss - through
            nan_rows = log_p.select(dim, 0).isnan() | total.isnan() | dtotal.isnan()
            dloss = dloss.masked_fill(nan_rows, _NAN)  # ... but NaN stays NaN
        # zeros, not None: torch 2.13 asserts on a None tangent of a differentiable output
        if dlog_p is None:
            dlog_p = torch.zeros_like(log_p)
        if dtotal is None:
            dtotal = torch.zeros_like(total)
        return dloss, dlog_p, dtotal


def dense_loss(labels: torch.Tensor, logits: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum_c labels_c * (logsumexp(logits) - logits_c)`` over ``dim``; 0 where
    ``labels_c == 0``. ``labels`` and ``logits``: same shape, same float dtype."""
    differentiated = torch.is_grad_enabled() and (labels.requires_grad or logits.requires_grad)
    if torch.compiler.is_compiling():  # dynamo cannot trace a Function with a forward rule
        if differentiated:
            return _DenseLoss.apply(labels, logits, dim)[0]
        return _traced_loss(labels, logits, dim)
    if transformed(labels, logits):
        return _DenseLossForwardMode.apply(labels, logits, dim)[0]
    if logits.is_cpu:  # plain eager code: one pass over chunks that stay in the cache
        return eager_kept.plain_loss(labels, logits, dim)
    if differentiated:
        return _DenseLossForwardMode.apply(labels, logits, dim)[0]
    return _forward(labels, logits, dim, keep=False)[0]
