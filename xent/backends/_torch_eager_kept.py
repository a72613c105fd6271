"""The sparse loss with a ``where`` mask in one pass, forward and backward, in plain eager
code on the CPU (``_torch_eager_options.dressing`` says when).

The chunked kernel (``_torch_eager``) writes each chunk's masked logits ``x~`` before its
``log_softmax``; here nothing of the input's size is written but the gradient. From the
maximum ``m`` over *all* classes (kept or not), ``d = x - m``, the kept sum
``s = sum_c k_c exp(d_c)`` (``k`` the mask as 1.0 / 0.0, from its bytes), ``r = log s``
(``lse(x~) = m + r``), and, with label smoothing ``e`` and class weights ``w``,
``A = sum_c k_c w_c``, ``B = sum_c k_c w_c d_c``::

    loss = (1 - e) w_t k_t (r - d_t) + e / C (A r - B)          (0 in an ignored row)
    d/dx_c = g (alpha k_c exp(d_c) / s - beta [c = t] - e / C k_c w_c)
    alpha = (1 - e) w_t k_t + e / C A,   beta = (1 - e) w_t k_t

(the smoothed one-hot labels' formula of :class:`Dressing`; a class excluded by the mask
gets gradient 0). ``B`` is a ``nansum``: ``0 * -inf`` at a class excluded or weighted 0 is
its 0 share; any other NaN has made the row's maximum NaN. Per chunk of ``CHUNK`` elements
(its passes stay in L2): the forward's row maximum, ``d``, the mask as floats, ``exp`` and
dots; the backward's ``d``, ``exp``, the mask and two products, and a scatter at the label.

Where a row not ignored is not that formula, :func:`kept_loss` returns None and the caller
runs the chunked kernel on the masked logits: a NaN or infinite logit (kept or not: the
maximum is not finite), no class left, a label at an excluded ``-inf``, and an excluded
maximum far above the kept logits (``r < 0``) where a term cancels (``r - d_t < -r``,
``A r - B < -A r``) or the kept sum underflows (``_numpy_fused``'s suspect rows). The
values differ from the chunked kernel's by a few ulps (other roundings of the same
formula). Derivatives of derivatives and batched gradients differentiate the formula out
of place, from the saved logits.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from xent.backends._torch_context import transformed
from xent.backends._torch_eager import _chunks, _head
from xent.backends._torch_eager_options import Dressing

CHUNK = 1 << 16  # elements per chunk (measured best: 2**15-2**17, against 2**18 and more)


class _Rows(NamedTuple):
    """The forward's per-row numbers the backward reads (rows: the class axis kept, 1)."""

    m: torch.Tensor  # the maximum over every class
    s: torch.Tensor  # sum_c k_c exp(x_c - m)
    beta: torch.Tensor  # (1 - e) w_t k_t, 0 in an ignored row
    alpha: torch.Tensor  # beta + e / C A, 0 in an ignored row
    loose: torch.Tensor | None  # ignored rows whose maximum is not finite (their exp: NaN)


def kept_loss(logits: torch.Tensor, dim: int, dressing: Dressing) -> torch.Tensor | None:
    """The loss of :class:`Dressing`'s sparse labels and ``where`` mask (the module's
    formula), differentiable in ``logits``; None for a batch with a row it cannot take."""
    with torch.no_grad():
        found = _forward(logits, dim, dressing)
    if found is None:
        return None
    loss, rows = found
    if torch.is_grad_enabled() and logits.requires_grad:
        return _KeptLoss.apply(logits, dim, dressing, found)
    return loss


def _forward(logits: torch.Tensor, dim: int,
             dressing: Dressing) -> tuple[torch.Tensor, _Rows] | None:
    index, mask, ignored, cw = dressing.index, dressing.mask, dressing.ignored, \
        dressing.class_weights
    assert index is not None and mask is not None
    shape = logits.shape[:dim] + (1,) + logits.shape[dim + 1:]
    m, s = logits.new_empty(shape), logits.new_empty(shape)
    a = b = None
    if dressing.smooths:
        a, b = logits.new_empty(shape), logits.new_empty(shape)
    scratch: list[torch.Tensor] = []
    for x, k, m_c, s_c, a_c, b_c in _chunks(dim, logits, logits, mask, m, s, a, b,
                                            size=CHUNK):
        if not scratch:
            scratch = [torch.empty_like(x) for _ in range(2 if a is None else 3)]
        d, kept, *spare = (_head(t, x) for t in scratch)
        torch.amax(x, dim, keepdim=True, out=m_c)
        torch.sub(x, m_c, out=d)
        kept.copy_(k.view(torch.uint8))
        if a_c is not None:
            kw = kept if cw is None else torch.mul(kept, cw, out=spare[0])
            torch.sum(kw, dim, keepdim=True, out=a_c)
            torch.nansum(torch.mul(d, kw, out=spare[0]), dim, keepdim=True, out=b_c)
        s_c.copy_(torch.linalg.vecdot(d.exp_(), kept, dim=dim).unsqueeze(dim))
    r = s.log()
    info = torch.finfo(logits.dtype)
    beta = mask.gather(dim, index).to(logits.dtype)  # k_t
    if cw is not None:
        beta.mul_(cw.flatten()[index])
    beta.mul_(dressing.keep)
    read = beta != 0
    term = r - (logits.gather(dim, index) - m)  # lse~ - x_t
    suspect = (~torch.isfinite(m) | (read & (~torch.isfinite(term) | ((r < 0) & (term < -r))))
               | ((r < 0) & (s < logits.shape[dim] * info.tiny / info.eps)))
    loss = term.mul_(beta).masked_fill_(~read, 0.0)  # (1 - e) w_t k_t (r - d_t)
    alpha = beta
    if a is not None and b is not None:
        ar = a * r
        spread = ar - b  # A r - B: the smoothed labels' share (+-inf at a kept -inf logit)
        suspect |= spread.isnan() | ((r < 0) & (spread < -ar))
        loss.add_(spread, alpha=dressing.spread)
        alpha = beta + a.mul_(dressing.spread)
    loose = None
    if ignored is not None:
        rows = ignored.unsqueeze(dim)
        suspect &= ~rows
        loss.masked_fill_(rows, 0.0)
        alpha.masked_fill_(rows, 0.0)
        beta.masked_fill_(rows, 0.0)
        loose = rows & ~torch.isfinite(m)
        loose = loose if bool(loose.any()) else None
    if bool(suspect.any()):
        return None
    return loss.squeeze(dim), _Rows(m, s, beta, alpha, loose)


def _gradient(logits: torch.Tensor, dim: int, dressing: Dressing, rows: _Rows,
              grad: torch.Tensor) -> torch.Tensor:
    """``d/dlogits`` (the module's formula) for the loss's cotangent ``grad``, chunk by
    chunk, into one new buffer."""
    g = grad.unsqueeze(dim)
    scale = (rows.alpha * g / rows.s).masked_fill_(rows.alpha == 0, 0.0)  # g alpha / s
    pick = (rows.beta * g).neg_()  # -g beta, at the label
    smooth = None
    if dressing.smooths:  # -g e / C (k_c w_c): 0 in an ignored row
        smooth = g * -dressing.spread
        if dressing.ignored is not None:
            smooth.masked_fill_(dressing.ignored.unsqueeze(dim), 0.0)
    cw = dressing.class_weights
    out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    kept = None
    for x, k, m, sc, pk, sm, index, o in _chunks(dim, logits, logits, dressing.mask, rows.m,
                                                 scale, pick, smooth, dressing.index, out,
                                                 size=CHUNK):
        if kept is None:
            kept = torch.empty_like(x)
        k_c = _head(kept, x).copy_(k.view(torch.uint8))
        torch.sub(x, m, out=o).exp_().mul_(k_c).mul_(sc)
        if sm is not None:
            o.addcmul_(k_c if cw is None else k_c.mul_(cw), sm)
        o.scatter_add_(dim, index, pk)
    if rows.loose is not None:  # an ignored row of NaN or infinities: exactly 0
        out.masked_fill_(rows.loose, 0.0)
    return out


def _out_of_place(logits: torch.Tensor, dim: int, dressing: Dressing,
                  grad: torch.Tensor) -> torch.Tensor:
    """The gradient as a composition autograd can differentiate (derivatives of
    derivatives) and ``torch.func`` can batch (batched gradients): ``g (softmax(x~)
    sum(y~) - y~)`` of the masked logits and dressed labels, 0 where nothing is read."""
    assert dressing.mask is not None and dressing.index is not None
    x = logits.masked_fill(dressing.mask.logical_not(), float("-inf"))
    if dressing.ignored is not None:
        x = x.masked_fill(dressing.ignored.unsqueeze(dim), 0.0)
    y = dressing.full_labels(dressing.index)
    g = grad.unsqueeze(dim)
    out = torch.softmax(x, dim) * (g * y.sum(dim, keepdim=True)) - y * g
    return dressing.excluded_zero(out)


class _KeptLoss(torch.autograd.Function):
    """``logits -> loss`` for plain eager autograd; the forward's numbers come in computed."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, dim: int, dressing: Dressing,
                found: tuple[torch.Tensor, _Rows]) -> torch.Tensor:
        ctx.dim, ctx.dressing, ctx.rows = dim, dressing, found[1]
        ctx.save_for_backward(logits)
        return found[0]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (logits,) = ctx.saved_tensors
        if torch.is_grad_enabled() or transformed(grad):
            dlogits = _out_of_place(logits, ctx.dim, ctx.dressing, grad)
        else:
            dlogits = _gradient(logits, ctx.dim, ctx.dressing, ctx.rows, grad)
        return dlogits, None, None, None
