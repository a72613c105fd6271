"""Loss options on the NumPy backend: the array operations, and the options tile by tile.

The options mean what ``xent._options`` composes (the same formula on every backend). On
NumPy they run inside the backend's tiling and threads, one ``[rows, C]`` tile at a time, so
that masking, smoothing and class weights never allocate an array the size of the input:
folded into the row kernels' passes by ``_numpy_fused``, with ``_options.dense_rows`` /
``sparse_rows`` (on this module's NumPy operations) as the fallback for the rows the fused
arithmetic flags (NaN, ``0 * -inf``, cancellation) and for inputs of a few dozen elements.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xent import _options
from xent.backends import _numpy_fused as fused
from xent.backends import _numpy_kernels as kernels
from xent.backends._numpy_tiles import Layout, quiet, scratch

Array = np.ndarray

_COMPUTE: dict[np.dtype, np.dtype] = {np.dtype(np.float32): np.dtype(np.float32),
                                      np.dtype(np.float64): np.dtype(np.float64)}


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 or float64: the dtype the kernels run in."""
    return _COMPUTE.get(dtype, np.dtype(np.float32))


class NumpyArrayOps:
    """The array operations ``xent._options`` composes (see ``Backend``), in NumPy."""

    def where(self, condition: Array, x: Any, y: Any) -> Array:
        if isinstance(y, (int, float)) and isinstance(x, np.ndarray):
            y = np.asarray(y, x.dtype)  # keep x's dtype (bfloat16 would become float64)
        elif isinstance(x, (int, float)) and isinstance(y, np.ndarray):
            x = np.asarray(x, y.dtype)
        return np.where(condition, x, y)

    def equal(self, x: Array, value: int) -> Array:
        return np.equal(x, value)

    def not_equal(self, x: Array, value: int) -> Array:
        return np.not_equal(x, value)

    def expand_dims(self, x: Array, axis: int) -> Array:
        return np.expand_dims(x, axis)

    def in_range(self, index: Array, num_classes: Any) -> Array:
        return (index >= 0) & (index < num_classes)

    def one_hot(self, index: Array, like: Array, axis: int) -> Array:
        out = np.zeros(like.shape, like.dtype)
        np.put_along_axis(out, np.expand_dims(index, axis), 1, axis)
        return out

    def take(self, table: Array, index: Array) -> Array:
        return np.take(table, index, mode="clip")

    def along(self, vector: Array, axis: int, like: Array) -> Array:
        return vector.reshape([-1 if d == axis else 1 for d in range(like.ndim)])

    def row_dot(self, labels: Array, vector: Array, axis: int) -> Array:
        dtype = compute_dtype(np.result_type(labels, vector))
        return np.vecdot(np.moveaxis(labels, axis, -1), vector, dtype=dtype)

    def broadcast_like(self, x: Array, like: Array) -> Array:
        return np.broadcast_to(x, like.shape)

    def total(self, x: Array) -> Array:
        return np.add.reduce(x, axis=None, dtype=compute_dtype(np.asarray(x).dtype))

    def count(self, mask: Array, like: Array) -> Array:
        return compute_dtype(like.dtype).type(np.count_nonzero(mask))

    def divide(self, total: Array, denominator: Array, like: Array) -> Array:
        with quiet():  # 0 / 0 is NaN, on purpose
            return np.asarray(total / denominator).astype(like.dtype)[()]


class _TileOps(NumpyArrayOps):
    """The operations on one ``[rows, C]`` tile in the compute dtype: the row kernels."""

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                          axis: int) -> Array:
        y = np.ascontiguousarray(labels, logits.dtype)
        return kernels.dense_loss(y, logits, scratch("e", logits.shape, logits.dtype))

    def sparse_softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                                 axis: int) -> Array:
        return kernels.sparse_loss(labels, np.ascontiguousarray(logits),
                                   scratch("e", logits.shape, logits.dtype))


_TILE = _TileOps()


def dense_tiled(backend: Any, labels: Array, logits: Array, axis: int,
                opt: _options.Options) -> Array:
    """The dense loss with options, tile by tile: the fused kernels (``_numpy_fused``), and
    ``_options.dense_rows`` on the rows they flag as suspect."""
    layout = Layout(logits.shape, axis)
    y3, m3, p = layout.view(labels), _mask(layout, logits, opt), _plan(layout, logits, opt)
    generic = _generic_options(opt, p)

    def rows(tile: tuple[int, int, int, int], x: Array) -> Array:
        y = layout.rows(y3, tile, x.dtype, "y")
        mask = None if m3 is None else layout.rows(m3, tile, x.dtype, "m")
        loss, suspect = fused.dense_loss(y, x, mask, p)
        if suspect is not None:
            at = np.flatnonzero(suspect)
            loss[at] = _options.dense_rows(_TILE, y[at], x[at], 1,
                                           _rows_of(generic, mask, p, at))
        return loss

    return _weighted(backend._reduce_rows(logits, layout, rows), opt)


def sparse_tiled(backend: Any, labels: Array, logits: Array, axis: int,
                 opt: _options.Options) -> Array:
    """The sparse loss with options, tile by tile: the fused kernels on the rows not ignored,
    and ``_options.sparse_rows`` on the rows they flag as suspect."""
    layout = Layout(logits.shape, axis)
    l2, m3, p = layout.view_reduced(labels), _mask(layout, logits, opt), _plan(layout, logits,
                                                                             opt)
    generic = _generic_options(opt, p)

    def rows(tile: tuple[int, int, int, int], x: Array) -> Array:
        picked = layout.reduced_tile(l2, tile).reshape(-1)
        block = None if m3 is None else layout.rows(m3, tile, None, "mb")  # boolean
        ignored = None if opt.ignore_index is None else picked == opt.ignore_index
        if ignored is None or not ignored.any():
            return _sparse_rows(picked, x, _floats(block, x.dtype), p, generic)
        if 2 * np.count_nonzero(ignored) < ignored.size:  # cheaper to compute than to gather
            loss = _sparse_rows(np.where(ignored, 0, picked), x, _floats(block, x.dtype), p,
                                generic, ignored)
            loss[ignored] = 0.0  # an ignored row is never read: its value is dropped
            return loss
        loss = np.zeros(picked.shape, x.dtype)
        kept = np.flatnonzero(~ignored)
        if kept.size:  # mostly padding: gather the rows not ignored
            x = np.take(x, kept, axis=0, out=scratch("kept", (kept.size, x.shape[1]), x.dtype))
            if block is not None:
                block = np.take(block, kept, axis=0,
                                out=scratch("kept mask", x.shape, block.dtype))
            loss[kept] = _sparse_rows(picked[kept], x, _floats(block, x.dtype), p, generic)
        return loss

    return _weighted(backend._reduce_rows(logits, layout, rows), opt)


def _floats(block: Array | None, dtype: np.dtype) -> Array | None:
    """A boolean mask tile as 0/1 in ``dtype`` (scratch), for the fused kernels' BLAS dots."""
    if block is None:
        return None
    out = scratch("m", block.shape, dtype)
    np.copyto(out, block, casting="unsafe")
    return out


def _sparse_rows(labels: Array, x: Array, mask: Array | None, p: fused.Plan,
                 generic: _options.Options, ignored: Array | None = None) -> Array:
    """The fused sparse kernel on every row, the generic composition on its suspect rows
    (``ignored`` rows excepted: their values are dropped). With nothing to fold in (only
    ``ignore_index`` or row weights), the kernel of a call without options: the same
    numbers, a few row-sized steps fewer."""
    if mask is None and p.plain:
        return kernels.sparse_loss(labels, x, scratch("e", x.shape, x.dtype))
    loss, suspect = fused.sparse_loss(labels, x, mask, p)
    if suspect is not None and ignored is not None:
        suspect &= ~ignored
    if suspect is not None and suspect.any():
        at = np.flatnonzero(suspect)
        loss[at] = _options.sparse_rows(_TILE, labels[at], x[at], 1,
                                        _rows_of(generic, mask, p, at))
    return loss


def _plan(layout: Layout, logits: Array, opt: _options.Options) -> fused.Plan:
    """The options for the fused kernels; a ``where`` the same for every row as one row."""
    compute = compute_dtype(logits.dtype)
    return fused.plan(layout.classes, float(opt.label_smoothing) if opt.smooths else 0.0,
                      opt.class_weights, _row_mask(layout, logits, opt), compute)


def _row_mask(layout: Layout, logits: Array, opt: _options.Options) -> Array | None:
    """``where`` as a boolean ``[C]`` when it is the same for every row (classes last)."""
    if opt.where is None or layout.inner != 1:
        return None
    where = np.broadcast_to(opt.where, logits.shape)
    if all(n == 1 or s == 0 for n, s in zip(where.shape[:-1], where.strides[:-1])):
        return where[(0,) * (where.ndim - 1)]
    return None


def _mask(layout: Layout, logits: Array, opt: _options.Options) -> Array | None:
    """The ``where`` mask broadcast to the logits and seen like them (a view, no copy), or
    None: no mask, or one row of it for every row (:func:`_row_mask`)."""
    if opt.where is None or _row_mask(layout, logits, opt) is not None:
        return None
    return layout.view(np.broadcast_to(opt.where, logits.shape))


def _generic_options(opt: _options.Options, p: fused.Plan) -> _options.Options:
    """``opt`` for ``_options.*_rows`` on suspect rows: class weights in the compute dtype;
    ignored rows and row weights are handled around the tiles."""
    return dataclasses.replace(opt, class_weights=p.class_weights, weights=None,
                               ignore_index=None, where=None)


def _rows_of(generic: _options.Options, mask: Array | None, p: fused.Plan,
             at: Array) -> _options.Options:
    """``generic`` with the ``where`` of rows ``at`` of a tile."""
    if mask is not None:
        return dataclasses.replace(generic, where=mask[at] != 0)
    if p.row_mask is not None:
        return dataclasses.replace(generic, where=p.row_mask != 0)
    return generic


def _weighted(loss: Array, opt: _options.Options) -> Array:
    if opt.weights is None:
        return loss
    with quiet():
        return (loss * np.asarray(opt.weights)).astype(loss.dtype, copy=False)
