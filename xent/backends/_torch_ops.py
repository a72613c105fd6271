"""What the torch backend adds to torch's kernels: the dense loss.

**Dense loss.** ``loss = -sum_c labels_c * log_softmax(logits)_c`` over ``dim``, where a
class with ``labels_c == 0`` adds exactly 0 even at ``logits_c == -inf`` (torch's
``0 * -inf`` is NaN). ``log_softmax`` is torch's fused kernel; the products are summed
with ``nansum``, which drops the masked classes' ``0 * -inf``. ``nansum`` would also drop
real NaNs, so they are put back per row: a NaN, ``+inf`` or all ``-inf`` logit row makes
its whole ``log_softmax`` row NaN (torch subtracts a non-finite maximum), so its first
element tells; NaN labels make ``sum(labels)``, which the gradient needs anyway, NaN.
Every other NaN product is ``0 * -inf``.

Gradients, from the ``log_softmax`` saved by the forward pass:
``d/dlogits = exp(log_softmax) * sum(labels) - labels`` (0 at a masked class, so finite
wherever the loss is) and ``d/dlabels = -log_softmax = logsumexp - logits`` (``+inf`` at a
masked class, its true value). Under ``create_graph=True`` the backward recomputes them
from the inputs with differentiable torch ops, so double backward works too.

Accuracy is torch's: ``log_softmax`` computes ``logsumexp - x_max`` as
``log(sum exp(x - x_max))``, a few eps *absolute*, so a loss far below eps (a confident,
correct prediction) comes out 0. Recomputing such rows as the NumPy reference does costs
1.5-2.5x on a trained model's batches, where most rows are confident; the gradients, which
training uses, are accurate either way. ``Backend.relative_accuracy`` is False here.
"""

from __future__ import annotations

from typing import Any

import torch

_NAN = float("nan")

try:  # torch.func's vmap/grad wrappers have no storage to read on the host
    from torch._C._functorch import is_functorch_wrapped_tensor as _wrapped
except ImportError:  # pragma: no cover - a torch without functorch

    def _wrapped(tensor: torch.Tensor) -> bool:
        return False


def checks_on_host(x: torch.Tensor) -> bool:
    """True when ``x``'s values can be read without an accelerator sync or a trace break
    (``torch.compile``, ``torch.func`` transforms)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling() and not _wrapped(x)


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


class _DenseLoss(torch.autograd.Function):
    """The dense loss as one autograd node with a fused backward (``torch.func`` ready)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        labels: torch.Tensor, logits: torch.Tensor, dim: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _forward(labels, logits, dim, keep=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        labels, logits, ctx.dim = inputs
        _, log_p, total = output  # outputs, not ctx attributes: torch.func must see them
        ctx.mark_non_differentiable(log_p, total)
        ctx.set_materialize_grads(False)  # else autograd fills a zero gradient for log_p
        ctx.save_for_backward(labels, logits, log_p, total)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, *_: Any) -> tuple[Any, ...]:
        if grad is None:
            return None, None, None
        labels, logits, log_p, total = ctx.saved_tensors
        dim = ctx.dim
        want_labels, want_logits = ctx.needs_input_grad[:2]
        g = grad.unsqueeze(dim)
        if torch.is_grad_enabled():  # create_graph: differentiable in labels, logits, grad
            log_p = torch.log_softmax(logits, dim)
            total = labels.sum(dim, keepdim=True)
            dlogits = log_p.exp() * (g * total) - labels * g if want_logits else None
            return (-log_p * g if want_labels else None), dlogits, None
        dlogits = dlabels = None
        if want_logits:
            dlogits = log_p.exp().mul_(g * total.unsqueeze(dim))
            dlogits.addcmul_(labels, g, value=-1)
        if want_labels:
            dlabels = log_p * g.neg()
        return dlabels, dlogits, None


def dense_loss(labels: torch.Tensor, logits: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum_c labels_c * (logsumexp(logits) - logits_c)`` over ``dim``; 0 where
    ``labels_c == 0``. ``labels`` and ``logits``: same shape, same float dtype."""
    if torch.is_grad_enabled() and (labels.requires_grad or logits.requires_grad):
        return _DenseLoss.apply(labels, logits, dim)[0]
    return _forward(labels, logits, dim, keep=False)[0]
