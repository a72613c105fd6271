"""The dense loss in plain eager code (no ``torch.func`` transform, no ``torch.compile``, no
forward-mode AD), computed chunk by chunk.

The formula is ``_torch_ops``' (``loss = -nansum_c(labels_c * log_p_c)``, NaN put back for
the rows whose ``log_p`` or ``sum(labels)`` is NaN), the same ops on the same numbers. What
differs is where the data lives: the rows are taken a chunk of about ``CHUNK`` elements at a
time (along dim 0, when the class axis is not dim 0), so that the products and the sums read
a chunk that is still in the cache, and no temporary the size of the input is allocated (on
CPU a fresh large buffer costs page faults on every call). Per call, the forward writes only
``log_p`` (kept for the gradient) and the backward only the logits gradient:

- reverse: ``d/dlogits = g * (p * s - labels)`` is ``_log_softmax_backward_data(-g * labels,
  log_p)`` (``G - exp(log_p) * sum(G)``), chunk by chunk;
- derivatives of derivatives: ``log_p`` is a (hidden) output, the backward then runs the same
  formula out of place, so autograd differentiates it (double backward,
  ``is_grads_batched``).

Who comes here: the dense loss without options (``_torch_ops.dense_loss``) first takes
:func:`small_loss`, then ``_torch_eager_kept``'s one pass, and this kernel only for a batch
that pass cannot take (a NaN row); loss options come here where that pass cannot take them.

Inputs of at most ``NATIVE`` elements with their classes on dim 1 or last
(:func:`small_loss`) take torch's own ``F.cross_entropy(logits, probs)``, whose values and
derivatives are the formula's wherever its value is not NaN (only ``0 * -inf`` makes it
differ): its values are checked for NaN (read on the host up to ``SMALL`` elements), and a
call with a NaN row is computed again. A few kernels instead of a dozen: at 2x3 the cost of
a call is Python's and the dispatcher's, and up to about 2**18 elements torch's kernel, whose
``log_p`` is then cheap to write, measured 1.1-1.7x faster than either pass here (at
8x1000 to 2x128256, one thread).
"""

from __future__ import annotations

from typing import Any

import torch

from xent.backends._torch_eager_options import Buffers, Dressing

CHUNK = 1 << 18  # elements per chunk (1 MiB of float32): its log_p and products stay cached
SMALL = 1 << 12  # up to this many elements, torch's kernel's values are read on the host
NATIVE = 1 << 18  # up to this many, torch's kernel (its log_p is cheap; measured faster)
_NAN = float("nan")
# F.cross_entropy without its Python (its stub types `reduction` as str: it takes an int)
_cross_entropy: Any = torch._C._nn.cross_entropy_loss


def _chunks(dim: int, like: torch.Tensor, *tensors: Any, size: int = CHUNK) -> Any:
    """``tensors`` (of ``like``'s rows; None stays None) a chunk of about ``size`` elements
    at a time, along dim 0; the whole of them where the class axis ``dim`` is 0."""
    rows = like.shape[0] if like.ndim > 0 else 0
    if dim == 0 or rows == 0:
        yield tensors
        return
    step = max(1, size * rows // like.numel())
    for i in range(0, rows, step):
        yield tuple(None if t is None else t[i:i + step] for t in tensors)


def forward(labels: torch.Tensor, logits: torch.Tensor, dim: int,
            log_p: torch.Tensor | None = None, dressing: Dressing | None = None) -> torch.Tensor:
    """The loss rows; ``log_p`` (if given: ``logits``' shape, contiguous) receives
    ``log_softmax(logits)``. With a ``dressing`` (loss options), each chunk's labels and
    logits are first made the options' ``y~`` and ``x~`` (``_torch_eager_options``)."""
    loss, first, total = (logits.new_empty(logits.shape[:dim] + logits.shape[dim + 1:])
                          for _ in range(3))
    rows = (labels, None, None) if dressing is None else dressing.rows(labels)
    scratch = bufs = None
    for y, mask, ignored, x, lp, loss_c, first_c, total_c in _chunks(
            dim, logits, *rows, logits, log_p, loss, first, total):
        if scratch is None:
            scratch = torch.empty(x.shape, dtype=x.dtype, device=x.device)
            bufs = None if dressing is None else Buffers(scratch)
        out = (_head(scratch, x), lp, loss_c, first_c, total_c)
        if dressing is None:
            _loss_rows(y, x, dim, *out)
            continue
        assert bufs is not None
        for exact in (False, True):
            dressed_y, dressed_x = dressing.chunk(None if dressing.gathers else y, x, mask,
                                                  ignored, bufs.head(x), exact)
            if dressing.gathers:
                lp = torch.log_softmax(dressed_x, dim, out=out[0] if lp is None else lp)
                first_c.copy_(lp.select(dim, 0))
                loss_c.copy_(dressing.picked(lp, y, mask, ignored))
                total_c.zero_()
            else:
                _loss_rows(dressed_y, dressed_x, dim, *out)
            if mask is None or not bool(first_c.isnan().any() or total_c.isnan().any()):
                break  # else a NaN row: real, or a NaN at an excluded class (Dressing.chunk)
    # nansum dropped every 0 * -inf (a masked class) but also real NaNs: a NaN, +inf or
    # all -inf logit row has a NaN log_p row, NaN labels a NaN sum; those rows are NaN
    return loss.neg_().masked_fill_(first.isnan() | total.isnan(), _NAN)


def _loss_rows(y: torch.Tensor, x: torch.Tensor, dim: int, buf: torch.Tensor,
               lp: torch.Tensor | None, loss: torch.Tensor, first: torch.Tensor,
               total: torch.Tensor) -> None:
    """One chunk: ``-loss`` (before NaN rows are put back), ``log_p``'s first class and
    ``sum(y)`` of its rows, into ``loss``, ``first``, ``total``; ``lp`` (if not None)
    receives ``log_softmax(x)``, else ``buf`` is scratch for it."""
    if lp is None:  # no gradient: the products overwrite log_p
        lp = torch.log_softmax(x, dim, out=buf)
        first.copy_(lp.select(dim, 0))
        products = lp.mul_(y)
    else:
        torch.log_softmax(x, dim, out=lp)
        first.copy_(lp.select(dim, 0))
        products = torch.mul(lp, y, out=buf)
    torch.nansum(products, dim, out=loss)
    torch.sum(y, dim, out=total)


def _head(scratch: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The first rows of a chunk buffer, as many as ``like`` has (the last chunk is short)."""
    return scratch if like.shape[0:1] == scratch.shape[0:1] else scratch[:like.shape[0]]


def _gradient(labels: torch.Tensor, log_p: torch.Tensor, grad: torch.Tensor,
              dim: int, dressing: Dressing | None = None) -> torch.Tensor:
    """``d/dlogits`` for the loss's cotangent ``grad``, chunk by chunk, in one new buffer:
    ``G - exp(log_p) * sum(G)`` with ``G = -grad * labels`` (the dressed labels ``y~``)."""
    out = torch.empty(log_p.shape, dtype=log_p.dtype, device=log_p.device)
    ng = grad.neg().unsqueeze(dim)
    rows = (labels, None, None) if dressing is None else dressing.rows(labels)
    scratch = bufs = None
    for y, mask, ignored, lp, g, o in _chunks(dim, log_p, *rows, log_p, ng, out):
        if scratch is None:
            scratch = torch.empty(lp.shape, dtype=lp.dtype, device=lp.device)
            bufs = None if dressing is None else Buffers(scratch)
        buf = _head(scratch, lp)
        if dressing is None:
            torch.mul(y, g, out=buf)
            torch._log_softmax_backward_data(buf, lp, dim, lp.dtype, out=o)
            continue
        assert bufs is not None
        for exact in (False, True):
            dressed = dressing.chunk(y, None, mask, ignored, bufs.head(lp), exact)[0]
            torch.mul(dressed, g, out=buf)
            torch._log_softmax_backward_data(buf, lp, dim, lp.dtype, out=o)
            if mask is None or bool(o.sum().isfinite()):
                break  # else a non-finite row: see Dressing.chunk
        if mask is not None and exact:
            torch.where(mask, o, dressing.zero, out=o)  # excluded: 0, also in a NaN row
    return out


class _Dense(torch.autograd.Function):
    """The dense loss, ``(labels, logits, dim) -> (loss, log_p)``, for plain eager autograd."""

    @staticmethod
    def forward(ctx: Any, labels: torch.Tensor, logits: torch.Tensor, dim: int,
                dressing: Dressing | None) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        loss = forward(labels, logits, dim, log_p, dressing)
        ctx.dim, ctx.dressing = dim, dressing
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(labels, log_p)
        return loss, log_p

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None,
                 grad_log_p: torch.Tensor | None) -> tuple[Any, ...]:
        from xent.backends._torch_context import transformed

        labels, log_p = ctx.saved_tensors
        dim, dressing = ctx.dim, ctx.dressing
        want_labels, want_logits = ctx.needs_input_grad[:2]
        dlabels = dlogits = None
        in_place = not (torch.is_grad_enabled() or grad_log_p is not None
                        or (grad is not None and transformed(grad)))
        if grad is not None:
            g = grad.unsqueeze(dim)
            if want_logits and in_place:
                dlogits = _gradient(labels, log_p, grad, dim, dressing)
            elif want_logits:  # a graph of this backward (double backward), batched grads
                y = labels if dressing is None else dressing.full_labels(labels)
                dlogits = log_p.exp() * (g * y.sum(dim, keepdim=True)) - y * g
            if want_labels:
                dlabels = log_p * g.neg()
                if dressing is not None:
                    dlabels = dressing.labels_gradient(dlabels)
        if grad_log_p is not None:  # only in derivatives of derivatives
            through = grad_log_p - log_p.exp() * grad_log_p.sum(dim, keepdim=True)
            dlogits = through if dlogits is None else dlogits + through
        if dressing is not None and dlogits is not None and not in_place:
            dlogits = dressing.excluded_zero(dlogits)  # excluded classes are never read
        return dlabels, dlogits, None, None


def small_loss(labels: torch.Tensor, logits: torch.Tensor, dim: int,
               weight: torch.Tensor | None = None, smoothing: float = 0.0
               ) -> torch.Tensor | None:
    """torch's own kernel on an input of at most ``NATIVE`` elements with its classes on
    dim 1 or last, or None: a larger input, or a NaN in its values (see the module). With
    class weights ``weight`` (``[C]``) and label smoothing, ``F.cross_entropy``'s for
    probability targets: ``sum_c w_c ((1 - e) y_c + e / C) (lse - x_c)``, xent's formula."""
    size, rank = logits.numel(), logits.ndim
    if size > NATIVE or not (dim == 1 or rank == 1 or dim == rank - 1):
        return None
    if rank > 2 and dim == rank - 1:  # [..., C]: rows of classes, as F takes them
        shape = logits.shape
        return _native(labels.reshape(-1, shape[-1]), logits.reshape(-1, shape[-1]),
                       size, shape[:-1], weight, smoothing)
    return _native(labels, logits, size, None, weight, smoothing)


def _native(labels: torch.Tensor, logits: torch.Tensor, size: int, shape: Any,
            weight: torch.Tensor | None, smoothing: float) -> torch.Tensor | None:
    loss = _cross_entropy(logits, labels, weight, 0, -100, smoothing)
    if has_nan(loss, size):  # a NaN row, or 0 * -inf at a masked class: the one pass
        return None
    return loss if shape is None else loss.reshape(shape)  # torch's value and graph


def has_nan(loss: torch.Tensor, size: int) -> bool:
    """Whether ``loss`` (of logits of ``size`` elements) has a NaN: read on the host for
    a few numbers (faster than torch's ops), else by torch."""
    rank = loss.ndim
    if rank == 0:
        total = loss.item()
    elif size > SMALL:
        return bool(loss.isnan().any())
    else:
        total = sum(loss.tolist() if rank == 1 else loss.reshape(-1).tolist())
    return total != total


def dense_loss(labels: torch.Tensor, logits: torch.Tensor, dim: int,
               dressing: Dressing | None = None) -> torch.Tensor:
    """``sum_c labels_c * (logsumexp(logits) - logits_c)`` over ``dim`` in plain eager code
    (``labels`` and ``logits``: same shape, same float dtype), chunk by chunk; with a
    ``dressing``, the options' ``y~`` and ``x~`` for ``labels`` and ``logits`` (sparse
    ``labels`` then)."""
    if torch.is_grad_enabled() and (labels.requires_grad or logits.requires_grad):
        return _Dense.apply(labels, logits, dim, dressing)[0]
    return forward(labels, logits, dim, dressing=dressing)
