"""What one Dask task computes on one block: NumPy in, NumPy out.

A block of logits (any rank, the class axis at ``axis``, holding the classes in its block of
``classes``) is walked tile by tile with the NumPy backend's ``Layout`` (``[rows, C_chunk]``
tiles in the compute dtype, per-thread scratch), so a task holds its block and a few tiles,
never a temporary the size of its block. Each tile gives its rows' statistics
(``_dask_kernels``); the loss options are composed on the tile by ``xent._options``, the
same code as on every backend, through :class:`StatsOps`, whose loss kernels return those
statistics instead of losses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from xent import _options
from xent.backends import _dask_kernels as kernels
from xent.backends._numpy_options import NumpyArrayOps, compute_dtype
from xent.backends._numpy_tiles import Layout, quiet, scratch

Array = np.ndarray
Tile = tuple[int, int, int, int]


class StatsOps(NumpyArrayOps):
    """The array operations of ``xent._options`` on one tile of one chunk of classes
    (``first, ...``): its loss kernels return ``[rows, 4]`` statistics, and a row-wise
    ``where`` (ignored or out-of-range rows) applies to all four of a row's statistics."""

    def __init__(self, first: int, num_classes: int) -> None:
        self.first, self.num_classes = first, num_classes

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                          axis: int) -> Array:
        x = np.ascontiguousarray(logits)
        y = np.ascontiguousarray(labels, x.dtype)
        return kernels.dense_stats(y, x, scratch("e", x.shape, x.dtype))

    def sparse_softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                                 axis: int) -> Array:
        x = np.ascontiguousarray(logits)
        return kernels.sparse_stats(labels, x, self.first, self.num_classes,
                                    scratch("e", x.shape, x.dtype))

    def one_hot(self, index: Array, like: Array, axis: int) -> Array:
        out = np.zeros(like.shape, like.dtype)
        local = index.astype(np.int64) - self.first
        rows = np.flatnonzero((local >= 0) & (local < like.shape[1]))
        out[rows, local[rows]] = 1
        return out

    def where(self, condition: Array, x: Any, y: Any) -> Array:
        if np.ndim(condition) == 1 and max(np.ndim(x), np.ndim(y)) == 2:
            condition = condition[:, None]  # a row's statistics, all four of them
        return super().where(condition, x, y)


def _stats_by_tile(x: Array, axis: int, tile_stats: Callable[[Layout, Tile, Array], Array]
                   ) -> Array:
    """``tile_stats(layout, tile, rows)`` over the tiles of block ``x``: the block's
    statistics, shaped ``x.shape`` with 1 at ``axis``, then the four fields."""
    layout = Layout(x.shape, axis)
    compute = compute_dtype(x.dtype)
    out = np.empty((layout.outer, layout.inner, kernels.FIELDS), compute)
    x3 = layout.view(x)
    with quiet():
        for tile in layout.tiles(0, layout.outer):
            o0, o1, i0, i1 = tile
            stats = tile_stats(layout, tile, layout.rows(x3, tile, compute, "x"))
            out[o0:o1, i0:i1] = stats.reshape(o1 - o0, i1 - i0, kernels.FIELDS)
    return out.reshape(x.shape[:axis] + (1,) + x.shape[axis + 1 :] + (kernels.FIELDS,))


def _tile_options(opt: _options.Options | None, where: Array | None, class_weights: Any,
                  x: Array) -> tuple[_options.Options | None, Array | None, Array | None]:
    """The options for this block's tiles: its ``where`` (broadcast to the block) and its
    slice of the class weights, in the compute dtype."""
    if opt is None:
        return None, None, None
    mask = None if where is None else np.broadcast_to(where, x.shape)
    cw = None if class_weights is None else np.asarray(class_weights, compute_dtype(x.dtype))
    return opt, mask, cw


def lse_stats(x: Array, classes: Array, *, axis: int) -> Array:
    """``(m, r)`` of each row of block ``x`` (statistics for softmax)."""
    def tile_stats(layout: Layout, tile: Tile, rows: Array) -> Array:
        return kernels.lse_stats(rows, scratch("e", rows.shape, rows.dtype))

    return _stats_by_tile(x, axis, tile_stats)


def dense_stats(x: Array, classes: Array, y: Array, where: Array | None,
                class_weights: Array | None, *, axis: int,
                opt: _options.Options | None) -> Array:
    """Statistics of the dense loss of block ``x`` with labels ``y`` and options ``opt``
    (its array options given per block: ``where``, ``class_weights``; weights come later)."""
    opt, mask, cw = _tile_options(opt, where, class_weights, x)
    ops = StatsOps(int(classes[0]) if classes.size else 0, 0)
    layout_y = Layout(x.shape, axis)
    y3 = layout_y.view(y)
    m3 = None if mask is None else layout_y.view(mask)

    def tile_stats(layout: Layout, tile: Tile, rows: Array) -> Array:
        yt = layout.rows(y3, tile, rows.dtype, "y")
        if opt is None:
            return ops.softmax_cross_entropy_with_logits(yt, rows, 1)
        where_t = None if m3 is None else layout.rows(m3, tile, None, "m")
        return _options.dense_rows(ops, yt, rows, 1, dataclasses.replace(
            opt, where=where_t, class_weights=cw, weights=None))

    return _stats_by_tile(x, axis, tile_stats)


def sparse_stats(x: Array, classes: Array, labels: Array, where: Array | None,
                 class_weights: Array | None, *, axis: int, num_classes: int,
                 opt: _options.Options | None) -> Array:
    """Statistics of the sparse loss of block ``x`` (``labels``: global class indices, the
    block's shape without ``axis``). Class weights reach the tiles only where the labels
    become one-hot (``where``, smoothing); else they scale the finished loss."""
    opt, mask, cw = _tile_options(opt, where, class_weights, x)
    ops = StatsOps(int(classes[0]) if classes.size else 0, num_classes)
    layout_l = Layout(x.shape, axis)
    l2 = layout_l.view_reduced(labels)
    m3 = None if mask is None else layout_l.view(mask)

    def tile_stats(layout: Layout, tile: Tile, rows: Array) -> Array:
        picked = layout.reduced_tile(l2, tile).reshape(-1)
        if opt is None:
            return ops.sparse_softmax_cross_entropy_with_logits(picked, rows, 1)
        where_t = None if m3 is None else layout.rows(m3, tile, None, "m")
        return _options.sparse_rows(ops, picked, rows, 1, dataclasses.replace(
            opt, where=where_t, class_weights=cw if opt.reshapes_labels else None,
            weights=None))

    return _stats_by_tile(x, axis, tile_stats)


def normalise(x: Array, stats: Array, *, axis: int, log: bool) -> Array:
    """``log_softmax`` (``log``) or ``softmax`` of block ``x`` from its rows' combined
    statistics (``x.shape`` without ``axis``, then the fields), in the dtype of ``x``."""
    stats = np.expand_dims(stats, axis)
    m = stats[..., kernels.M]
    out = kernels.normalise(x, m, stats[..., kernels.R], log)
    return out.astype(x.dtype, copy=False)
