"""Loss options on the chunked eager kernel (``_torch_eager``): the labels and logits of
``xent._options``' formula, built one cache-sized chunk at a time.

``xent._options`` composes the options from whole-tensor operations: ``where`` writes a
masked copy of the logits and of the labels, label smoothing and class weights each a copy of
the labels, and a sparse call with ``where`` or smoothing first writes one-hot labels, all of
the input's size, before the loss reads them again. Here each chunk of rows gets the same
numbers in two small buffers that are still in the cache when the loss reads them::

    x~ = x where m else -inf
    y~ = ((1 - e) y + e / C) * w   where m else 0     (y one-hot for sparse labels)

and a sparse row labelled ``ignore_index`` reads logits 0 and labels 0: loss 0, gradient 0
(as ``xent._options.sparse_rows``). The loss and its logits gradient are then the kernel's,
``sum_c y~_c (lse(x~) - x~_c)`` and ``g * (softmax(x~) * sum(y~) - y~)``, which is 0 at an
excluded class; a dense labels gradient is ``g * (lse - x~) * (1 - e) * w`` where ``m``,
else 0. A sparse call without smoothing reads ``w_t (lse(x~) - x~_t)`` at the label, with no
one-hot chunk. (Every call first tries one pass that writes no ``x~`` or ``y~`` at all,
``_torch_eager_kept``, but for a sparse call without a mask, which ``F.cross_entropy``
takes; a batch that pass cannot take comes here.) The mask is applied with float
arithmetic, which torch runs several times faster than its boolean kernels; a chunk where
that could differ from ``where`` (a NaN row) is computed again with ``where``
(:meth:`Dressing.chunk`). Labels and weights are built in the dtype the loss runs in
(float32 for 16-bit floats). Only plain eager code on the CPU comes here (:func:`dressing`
says when); row weights multiply the result, as in the composition. Measured by
``benchmarks/options.py``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from xent._options import Options
from xent.backends._torch_context import transformed

_INF = float("inf")
_NO_OPTIONS = Options()


@functools.cache
def _scalar(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A 0-d CPU tensor, never written to (``where``'s and ``index_put_``'s operand); a
    normal tensor even if first asked for under ``torch.inference_mode``."""
    with torch.inference_mode(False):
        return torch.tensor(value, dtype=dtype)


class Buffers:
    """Chunk-sized scratch buffers (allocated once per call, reused by every chunk), cut to
    the rows of a short last chunk by :meth:`head`."""

    def __init__(self, like: torch.Tensor) -> None:
        self.labels, self.logits, self.mask = (torch.empty_like(like) for _ in range(3))
        self.rows = like.shape[0] if like.ndim else 0

    def head(self, like: torch.Tensor) -> Buffers:
        if like.ndim == 0 or like.shape[0] == self.rows:
            return self
        cut = Buffers.__new__(Buffers)
        cut.labels, cut.logits, cut.mask = (b[:like.shape[0]] for b in (
            self.labels, self.logits, self.mask))
        cut.rows = like.shape[0]
        return cut


class Dressing:
    """How one chunk's labels and logits become ``y~`` and ``x~`` (see the module)."""

    def __init__(self, logits: torch.Tensor, dim: int, options: Any,
                 sparse_labels: torch.Tensor | None) -> None:
        self.dim, self.shape, self.dtype = dim, logits.shape, logits.dtype
        self.smooths, self.keep, self.spread = options.smooths, 1.0, 0.0  # (1 - e), e / C
        self.smoothing, self.classes = 0.0, options.num_classes or logits.shape[dim]  # e, C
        if options.smooths:
            e = self.smoothing = options.label_smoothing
            self.keep, self.spread = 1.0 - e, e / self.classes
        cw = options.class_weights
        self.class_weights = None if cw is None else cw.to(logits.dtype).reshape(
            [-1 if d == dim else 1 for d in range(logits.ndim)])
        mask = options.where
        # the chunked rows: the mask as the logits' shape (a view), the ignored rows
        self.mask = None if mask is None else mask.expand(logits.shape)
        # a mask shared by every row (a vocabulary mask: classes on dim 1 of [N, C]), as
        # [C] floats: the one pass weighs its sums by matrix-vector products and broadcasts
        # [C] floats (``row_weights``: times the class weights, the smoothing's weighting)
        self.row_mask: torch.Tensor | None = None
        self.row_weights: torch.Tensor | None = None
        if (self.mask is not None and logits.ndim == 2 and dim == 1 and logits.shape[0]
                and self.mask.stride(0) == 0):
            self.row_mask = self.row_weights = self.mask[0].to(logits.dtype)
            if self.class_weights is not None:
                self.row_weights = self.row_mask * self.class_weights.flatten()
        self.ignored = self.index = None
        if sparse_labels is not None:
            index = sparse_labels.long()
            if options.ignore_index is not None:
                self.ignored = index == options.ignore_index
                index = index.masked_fill(self.ignored, 0)
            self.index = index.unsqueeze(dim)

    @property
    def minus_inf(self) -> torch.Tensor:
        """``-inf`` as a 0-d tensor of the dtype (shared: creating one costs ~8 us)."""
        return _scalar(-_INF, self.dtype)

    @property
    def zero(self) -> torch.Tensor:
        return _scalar(0.0, self.dtype)

    @classmethod
    def plain(cls, logits: torch.Tensor, dim: int) -> Dressing:
        """No option at all (the dense loss itself, in ``_torch_eager_kept``'s one pass)."""
        return cls(logits, dim, _NO_OPTIONS, None)

    @property
    def is_plain(self) -> bool:
        """Whether there is nothing to apply (:meth:`plain`)."""
        return (self.mask is None and self.index is None and not self.smooths
                and self.class_weights is None)

    def rows(self, labels: torch.Tensor) -> tuple[Any, ...]:
        """What the kernel takes a chunk of, with the labels: ``(labels, mask, ignored)``."""
        return (labels if self.index is None else self.index, self.mask, self.ignored)

    def chunk(self, y: torch.Tensor | None, x: torch.Tensor | None, mask: Any, ignored: Any,
              bufs: Buffers, exact: bool = False) -> tuple[Any, Any]:
        """``(y~, x~)`` of one chunk (None for what is not asked: ``y`` or ``x`` None), in
        ``bufs`` (buffers of the chunk's shape). ``y`` is dense labels, or the label indices
        (unsqueezed along the class axis) of a sparse call.

        The mask is applied with float arithmetic: torch's boolean kernels (``where``,
        ``masked_fill``) and ``fmin`` run several times slower than the loss on the CPU.
        ``minimum(x, +-inf)`` is ``x`` where included and ``-inf`` where excluded, unless
        ``x`` is NaN there; ``y * 1`` and ``y * 0`` are ``where(m, y, 0)`` for finite labels.
        So a NaN logit or non-finite label at an excluded class makes a NaN row: the caller
        then asks again, for that chunk, with ``exact``."""
        dim, included = self.dim, None
        if mask is not None and not exact:
            included = bufs.mask.copy_(mask.view(torch.uint8))  # 1.0 / 0.0 (from bytes: fast)
        if y is not None:
            y = self._labels(y, mask, included, bufs.labels)
        if x is not None and mask is not None:
            if exact:
                x = torch.where(mask, x, self.minus_inf, out=bufs.logits)
            else:  # +inf where included, -inf where excluded (included is spent)
                assert included is not None
                x = torch.minimum(x, included.sub_(0.5).mul_(_INF), out=bufs.logits)
        if ignored is not None and bool(ignored.any()):
            rows = ignored.nonzero(as_tuple=True)  # a few padding rows: read as 0
            if y is not None:
                y.movedim(dim, -1).index_put_(rows, self.zero)
            if x is not None:
                x = x if x is bufs.logits else bufs.logits.copy_(x)
                x.movedim(dim, -1).index_put_(rows, self.zero)
        return y, x

    def _labels(self, y: torch.Tensor, mask: Any, included: Any,
                buf: torch.Tensor) -> torch.Tensor:
        """``y~`` of one chunk but for ignored rows; ``included``: the mask as 1.0 / 0.0, or
        None for the exact ``where`` (see :meth:`chunk`)."""
        if self.index is not None:  # one-hot, smoothed: (1 - e) + e / C at the label
            y = buf.fill_(self.spread).scatter_(self.dim, y, self.keep + self.spread)
        elif self.smooths:
            y = torch.mul(y, self.keep, out=buf).add_(self.spread)
        elif included is not None:  # copied and masked in one pass
            y, mask, included = torch.mul(y, included, out=buf), None, None
        else:
            y = buf.copy_(y)
        if included is not None:
            y.mul_(included)
        elif mask is not None:
            torch.where(mask, y, self.zero, out=y)
        return y if self.class_weights is None else y.mul_(self.class_weights)

    def weighted(self, y: torch.Tensor, included: torch.Tensor | None,
                 buf: torch.Tensor) -> torch.Tensor:
        """``((1 - e) y + e / C) w k`` of one chunk of dense labels (``k``: ``included``,
        the mask as 1.0 / 0.0, or None for none), in ``buf``; ``y`` itself where there is
        nothing to apply."""
        if included is None and not self.smooths and self.class_weights is None:
            return y
        return self._labels(y, None, included, buf)

    @property
    def gathers(self) -> bool:
        """Whether the forward loss is ``w_t * (lse(x~) - x~_t)`` of sparse labels where the
        label's class is included, read at the label (no smoothing: no one-hot labels)."""
        return self.index is not None and not self.smooths

    def picked(self, lp: torch.Tensor, index: torch.Tensor, mask: Any,
               ignored: Any) -> torch.Tensor:
        """``-loss`` of one chunk's rows for :attr:`gathers`: ``w_t * log_p_t`` where the
        label's class is included, else 0 (a row that reads nothing), 0 in ignored rows."""
        dim = self.dim
        out = lp.gather(dim, index)
        if mask is not None:
            out = torch.where(mask.gather(dim, index), out, self.zero)
        if self.class_weights is not None:
            out = out * self.class_weights.flatten()[index]
        if ignored is not None:
            out = out.masked_fill(ignored.unsqueeze(dim), 0.0)
        return out.squeeze(dim)

    def labels_gradient(self, minus_log_p_g: torch.Tensor) -> torch.Tensor:
        """``d/dlabels`` of dense labels from ``-log_p * g`` (the kernel's, for ``y~``)."""
        out = minus_log_p_g  # the chain rule's order: class weights, mask, smoothing
        if self.class_weights is not None:
            out = out * self.class_weights
        if self.mask is not None:
            out = out.masked_fill(self.mask.logical_not(), 0.0)
        return out * self.keep if self.smooths else out

    def excluded_zero(self, dlogits: torch.Tensor) -> torch.Tensor:
        """``dlogits`` with exactly 0 at excluded classes and ignored rows (their logits are
        never read): for the out-of-place gradient (derivatives of derivatives)."""
        if self.mask is not None:
            dlogits = dlogits.masked_fill(self.mask.logical_not(), 0.0)
        if self.ignored is not None:
            dlogits = dlogits.masked_fill(self.ignored.unsqueeze(self.dim), 0.0)
        return dlogits

    def full_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """``y~`` of the whole input, out of place (differentiable in dense ``labels``): for
        derivatives of derivatives."""
        if self.index is None:
            y = labels * self.keep + self.spread if self.smooths else labels
            if self.mask is not None:
                y = y.masked_fill(self.mask.logical_not(), 0.0)
            return y if self.class_weights is None else y * self.class_weights
        y = self._labels(self.index, self.mask, None,
                         torch.empty(self.shape, dtype=self.dtype, device=self.index.device))
        if self.ignored is not None:
            y.masked_fill_(self.ignored.unsqueeze(self.dim), 0.0)
        return y


def dressing(labels: torch.Tensor, logits: torch.Tensor, dim: int, options: Any,
             sparse: bool) -> Dressing | None:
    """The chunked options for this call, or None where it must be composed instead: not
    plain eager code on the CPU (``torch.func``, forward-mode AD, ``torch.compile``), a
    traced smoothing value, class weights that require a gradient, or nothing to build."""
    if not (options.where is not None or options.smooths
            or (options.class_weights is not None and not sparse)):
        return None
    if (not logits.is_cpu or type(options.label_smoothing) is not float
            or torch.compiler.is_compiling()):
        return None
    cw = options.class_weights
    if cw is not None and cw.requires_grad and torch.is_grad_enabled():
        return None
    checked = [labels, logits] + [t for t in (options.where, cw) if t is not None]
    if transformed(*checked):
        return None
    return Dressing(logits, dim, options, labels if sparse else None)
