"""The dense loss and loss options in one pass, forward and backward, in plain eager code on
the CPU: the dense loss without options above ``_torch_eager.NATIVE`` elements
(:func:`plain_loss`; ``k = 1``, ``u = y`` below), and where
``_torch_eager_options.dressing`` says so, a ``where`` mask (sparse or dense labels, with
any other option) and the label smoothing and class weights of dense labels (no mask:
``k = 1``). Without options it measured 0.90-0.97x the time of the chunked kernel
forward and backward at 4096x1000 to 64x128256 (no ``log_p`` written or saved), and the
same forward.

The chunked kernel (``_torch_eager``) writes each chunk's masked logits ``x~`` before its
``log_softmax``; here nothing of the input's size is written but the gradients. From the
maximum ``m`` over *all* classes (kept or not), ``d = x - m``, the kept sum
``s = sum_c k_c exp(d_c)`` (``k`` the mask as 1.0 / 0.0, from its bytes), ``r = log s``
(``lse(x~) = m + r``), and the labels before the mask ``u = ((1 - e) y + e / C) w`` (label
smoothing ``e``, class weights ``w``; :class:`Dressing`), ``U = sum_c k_c u_c`` and
``B = sum_c k_c u_c d_c``::

    loss = U r - B
    d/dx_c = g k_c (U exp(d_c) / s - u_c),   d/dy_c = g (1 - e) w_c k_c (r - d_c)

(a class excluded by the mask gets gradient 0). Sparse labels are one-hot without the
one-hot: ``loss = (1 - e) w_t k_t (r - d_t) + e / C (A r - B)`` with ``A = sum_c k_c w_c``,
``B = sum_c k_c w_c d_c``, the label's term read with a gather and its gradient a scatter
(0 in a row labelled ``ignore_index``). ``B`` is a ``nansum``: ``0 * -inf`` at a class
excluded or labelled 0 is its 0 share; any other NaN has made ``m`` or ``U`` NaN. Per chunk
of ``CHUNK`` elements (its passes stay in L2): the row maximum, ``d``, the mask as floats,
the labels' products, ``exp`` and dots; the rows' arithmetic once. A mask shared by every
row (``[C]``: a vocabulary's; ``Dressing.row_mask``) is cast once and not tiled: ``s`` is a
matrix-vector product (``torch.mv``), the rest broadcasts it.

Where a row is not that formula, :func:`loss` runs the chunked kernel on the masked logits
instead: a NaN or infinite logit (kept or not: ``m`` is not
finite), a NaN or infinite label at an excluded class (``U`` is NaN), no class left, and an
excluded maximum far above the kept logits (``r < 0``) where the terms cancel (a term below
``|r|`` times its labels) or the kept sum underflows (``_numpy_fused``'s suspect rows). The
values differ from the chunked kernel's by a few ulps (other roundings of the same
formula). Derivatives of derivatives and batched gradients differentiate the formula out of
place, from the saved inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from xent.backends._torch_context import transformed
from xent.backends._torch_eager import _chunks, _head, dense_loss, small_loss
from xent.backends._torch_eager_options import Dressing

CHUNK = 1 << 16  # elements per chunk (measured best: 2**15-2**17, against 2**18 and more)


class _Rows(NamedTuple):
    """The forward's per-row numbers the backward reads (rows: the class axis kept, 1)."""

    m: torch.Tensor  # the maximum over every class
    s: torch.Tensor  # sum_c k_c exp(x_c - m)
    alpha: torch.Tensor  # the softmax's share: U, or (1 - e) w_t k_t + e / C A (sparse)
    beta: torch.Tensor | None  # sparse: the label's share, (1 - e) w_t k_t
    loose: torch.Tensor | None  # sparse: ignored rows whose maximum is not finite


def plain_loss(labels: torch.Tensor, logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The dense loss without options: torch's kernel for a small input
    (``_torch_eager.small_loss``), else the module's formula with ``k = 1``, ``u = y``."""
    return loss(labels, logits, dim, Dressing.plain(logits, dim))


def loss(labels: torch.Tensor, logits: torch.Tensor, dim: int,
         dressing: Dressing) -> torch.Tensor:
    """The loss of ``labels`` (dense, or :class:`Dressing`'s sparse ones, then with a
    ``where`` mask) with :class:`Dressing`'s options, differentiable in both: the module's
    formula, or the chunked kernel for a batch with a row it cannot take. Dense labels
    without a mask on a small input take torch's own kernel, class weights and smoothing
    included (``_torch_eager.small_loss``)."""
    if (dressing.index is None and dressing.mask is None
            and dressing.classes == logits.shape[dim]):
        cw = dressing.class_weights
        small = small_loss(labels, logits, dim, None if cw is None else cw.reshape(-1),
                           dressing.smoothing)
        if small is not None:
            return small
    with torch.no_grad():
        found = _forward(labels, logits, dim, dressing)
    if found is None:
        return dense_loss(labels, logits, dim, None if dressing.is_plain else dressing)
    if torch.is_grad_enabled() and (logits.requires_grad or labels.requires_grad):
        return _KeptLoss.apply(labels, logits, dim, dressing, found)
    return found[0]


def _forward(labels: torch.Tensor, logits: torch.Tensor, dim: int,
             dressing: Dressing) -> tuple[torch.Tensor, _Rows] | None:
    """The loss and the numbers its backward reads, or None (a row it cannot take)."""
    if dressing.index is None:
        return _dense_forward(labels, logits, dim, dressing)
    return _sparse_forward(logits, dim, dressing)


def _tiled(dressing: Dressing) -> torch.Tensor | None:
    """The mask the chunks take a tile of: None where it is shared by every row
    (``Dressing.row_mask``, applied as a ``[C]`` vector instead)."""
    return None if dressing.row_mask is not None else dressing.mask


def _underflows(r: torch.Tensor, s: torch.Tensor, logits: torch.Tensor,
                dim: int) -> torch.Tensor:
    """Rows whose kept sum may have lost its digits: an excluded maximum far above."""
    info = torch.finfo(logits.dtype)
    return (r < 0) & (s < logits.shape[dim] * info.tiny / info.eps)


def _dense_forward(labels: torch.Tensor, logits: torch.Tensor, dim: int,
                   dressing: Dressing) -> tuple[torch.Tensor, _Rows] | None:
    """``U r - B`` of dense labels (:func:`_forward`); without a mask, ``k = 1``."""
    shape = logits.shape[:dim] + (1,) + logits.shape[dim + 1:]
    m, s, total, b = (logits.new_empty(shape) for _ in range(4))
    shared = dressing.row_mask
    scratch: list[torch.Tensor] = []
    for y, x, k, m_c, s_c, u_c, b_c in _chunks(dim, logits, labels, logits, _tiled(dressing),
                                               m, s, total, b, size=CHUNK):
        if not scratch:
            scratch = [torch.empty_like(x) for _ in range(3)]
        d, kept, ku = (_head(t, x) for t in scratch)
        torch.amax(x, dim, keepdim=True, out=m_c)
        torch.sub(x, m_c, out=d)
        if k is not None:
            kept.copy_(k.view(torch.uint8))
        u = dressing.weighted(y, shared if k is None else kept, ku)
        torch.sum(u, dim, keepdim=True, out=u_c)
        torch.nansum(torch.mul(u, d, out=ku), dim, keepdim=True, out=b_c)
        d.exp_()
        if shared is not None:
            torch.mv(d, shared, out=s_c.view(-1))
        else:
            torch.sum(d if k is None else d.mul_(kept), dim, keepdim=True, out=s_c)
    r = s.log()
    ur = total * r
    loss = ur - b  # U r - B (+inf at a kept -inf logit with a label)
    suspect = ~torch.isfinite(m) | ~torch.isfinite(total) | loss.isnan()
    if dressing.mask is not None:  # (without, the maximum is kept: s >= 1, r >= 0)
        suspect |= ((r < 0) & (loss.abs() < ur.abs())) | _underflows(r, s, logits, dim)
    if bool(suspect.any()):
        return None
    return loss.squeeze(dim), _Rows(m, s, total, None, None)


def _sparse_forward(logits: torch.Tensor, dim: int,
                    dressing: Dressing) -> tuple[torch.Tensor, _Rows] | None:
    """``(1 - e) w_t k_t (r - d_t) + e / C (A r - B)`` of sparse labels (:func:`_forward`)."""
    index, mask, ignored, cw = dressing.index, dressing.mask, dressing.ignored, \
        dressing.class_weights
    assert index is not None and mask is not None
    shape = logits.shape[:dim] + (1,) + logits.shape[dim + 1:]
    m, s = logits.new_empty(shape), logits.new_empty(shape)
    a = b = None
    if dressing.smooths:
        a, b = logits.new_empty(shape), logits.new_empty(shape)
    shared = dressing.row_mask  # [C] floats: A the same for every row, s a matrix-vector product
    shared_kw = dressing.row_weights
    if a is not None and shared_kw is not None:
        a.fill_(shared_kw.sum())  # A = sum_c k_c w_c
    scratch: list[torch.Tensor] = []
    for x, k, m_c, s_c, a_c, b_c in _chunks(dim, logits, logits, _tiled(dressing), m, s, a,
                                            b, size=CHUNK):
        if not scratch:
            scratch = [torch.empty_like(x) for _ in range(2 if a is None else 3)]
        d, kept, *spare = (_head(t, x) for t in scratch)
        torch.amax(x, dim, keepdim=True, out=m_c)
        torch.sub(x, m_c, out=d)
        if shared is not None and shared_kw is not None:
            if b_c is not None:
                torch.nansum(torch.mul(d, shared_kw, out=spare[0]), dim, keepdim=True, out=b_c)
            torch.mv(d.exp_(), shared, out=s_c.view(-1))
            continue
        kept.copy_(k.view(torch.uint8))
        if a_c is not None:
            kw = kept if cw is None else torch.mul(kept, cw, out=spare[0])
            torch.sum(kw, dim, keepdim=True, out=a_c)
            torch.nansum(torch.mul(d, kw, out=spare[0]), dim, keepdim=True, out=b_c)
        torch.sum(d.exp_().mul_(kept), dim, keepdim=True, out=s_c)
    r = s.log()
    beta = mask.gather(dim, index).to(logits.dtype)  # k_t
    if cw is not None:
        beta.mul_(cw.flatten()[index])
    beta.mul_(dressing.keep)
    read = beta != 0
    term = r - (logits.gather(dim, index) - m)  # lse~ - x_t
    suspect = (~torch.isfinite(m) | (read & (~torch.isfinite(term) | ((r < 0) & (term < -r))))
               | _underflows(r, s, logits, dim))
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
    return loss.squeeze(dim), _Rows(m, s, alpha, beta, loose)


def _sparse_gradient(logits: torch.Tensor, dim: int, dressing: Dressing, rows: _Rows,
                     grad: torch.Tensor) -> torch.Tensor:
    """``d/dlogits`` of sparse labels (the module's formula) for the loss's cotangent
    ``grad``, chunk by chunk, into one new buffer."""
    assert rows.beta is not None
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
    shared, shared_kw = dressing.row_mask, dressing.row_weights
    kept = None
    for x, k, m, sc, pk, sm, index, o in _chunks(dim, logits, logits, _tiled(dressing),
                                                 rows.m, scale, pick, smooth, dressing.index,
                                                 out, size=CHUNK):
        if shared is None:
            if kept is None:
                kept = torch.empty_like(x)
            k_c = _head(kept, x).copy_(k.view(torch.uint8))
        else:
            k_c = shared
        torch.sub(x, m, out=o).exp_().mul_(k_c).mul_(sc)
        if sm is not None:  # (k_c is not read again)
            kw = shared_kw if shared_kw is not None else k_c if cw is None else k_c.mul_(cw)
            o.addcmul_(kw, sm)
        o.scatter_add_(dim, index, pk)
    if rows.loose is not None:  # an ignored row of NaN or infinities: exactly 0
        out.masked_fill_(rows.loose, 0.0)
    return out


def _dense_gradients(labels: torch.Tensor, logits: torch.Tensor, dim: int,
                     dressing: Dressing, rows: _Rows, grad: torch.Tensor,
                     wanted: tuple[bool, bool]) -> tuple[Any, Any]:
    """``(d/dlabels, d/dlogits)`` of dense labels (the module's formula; None where not
    ``wanted``) for the loss's cotangent ``grad``, chunk by chunk, into new buffers."""
    g = grad.unsqueeze(dim)
    scale = rows.alpha * g / rows.s  # g U / s
    r = rows.s.log()  # lse(x~) - m
    label_scale = g * dressing.keep  # g (1 - e)
    cw = dressing.class_weights
    dlabels, dlogits = (torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
                        if want else None for want in wanted)
    scratch: list[torch.Tensor] = []
    shared = dressing.row_mask
    for y, x, k, m, sc, z, gy, g_c, oy, ox in _chunks(
            dim, logits, labels, logits, _tiled(dressing), rows.m, scale, r, label_scale, g,
            dlabels, dlogits, size=CHUNK):
        if not scratch:
            scratch = [torch.empty_like(x) for _ in range(2)]
        kept, u = (_head(t, x) for t in scratch)
        mask_c = shared if k is None else kept.copy_(k.view(torch.uint8))  # 1.0 / 0.0
        if ox is not None:  # g k (U exp(d) / s - u)
            torch.sub(x, m, out=ox).exp_().mul_(sc)
            ox.addcmul_(dressing.weighted(y, None, u), g_c, value=-1.0)
            if mask_c is not None:
                ox.mul_(mask_c)
        if oy is not None:  # g (1 - e) w k (lse - x): 0 at an excluded -inf, +inf at a kept
            torch.sub(z, torch.sub(x, m, out=oy), out=oy)  # r - d: relative, where d = 0
            if mask_c is not None:
                oy.mul_(mask_c).nan_to_num_(0.0, float("inf"))
            oy.mul_(gy)
            if cw is not None:
                oy.mul_(cw)
    return dlabels, dlogits


def _out_of_place(labels: torch.Tensor, logits: torch.Tensor, dim: int, dressing: Dressing,
                  grad: torch.Tensor, wanted: tuple[bool, bool]) -> tuple[Any, Any]:
    """The gradients as a composition autograd can differentiate (derivatives of
    derivatives) and ``torch.func`` can batch (batched gradients): ``g (softmax(x~)
    sum(y~) - y~)`` and ``-g log_softmax(x~)`` through the labels' options, of the masked
    logits and dressed labels, 0 where nothing is read (``_torch_eager._Dense``'s)."""
    x = logits
    if dressing.mask is not None:
        x = x.masked_fill(dressing.mask.logical_not(), float("-inf"))
    if dressing.ignored is not None:
        x = x.masked_fill(dressing.ignored.unsqueeze(dim), 0.0)
    log_p = torch.log_softmax(x, dim)
    g = grad.unsqueeze(dim)
    dlabels = dlogits = None
    if wanted[1]:
        y = dressing.full_labels(labels)
        dlogits = dressing.excluded_zero(log_p.exp() * (g * y.sum(dim, keepdim=True)) - y * g)
    if wanted[0]:
        dlabels = dressing.labels_gradient(log_p * g.neg())
    return dlabels, dlogits


class _KeptLoss(torch.autograd.Function):
    """``(labels, logits) -> loss`` for plain eager autograd; the forward's numbers come in
    computed."""

    @staticmethod
    def forward(ctx: Any, labels: torch.Tensor, logits: torch.Tensor, dim: int,
                dressing: Dressing, found: tuple[torch.Tensor, _Rows]) -> torch.Tensor:
        ctx.dim, ctx.dressing, ctx.rows = dim, dressing, found[1]
        ctx.save_for_backward(labels, logits)
        return found[0]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        labels, logits = ctx.saved_tensors
        dim, dressing, rows = ctx.dim, ctx.dressing, ctx.rows
        wanted = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        if torch.is_grad_enabled() or transformed(grad):
            dlabels, dlogits = _out_of_place(labels, logits, dim, dressing, grad, wanted)
        elif dressing.index is None:
            dlabels, dlogits = _dense_gradients(labels, logits, dim, dressing, rows, grad,
                                                wanted)
        else:
            dlabels, dlogits = None, _sparse_gradient(logits, dim, dressing, rows, grad)
        return dlabels, dlogits, None, None, None
