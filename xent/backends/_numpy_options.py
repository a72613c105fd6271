"""Loss options on the NumPy backend: the array operations, and the options tile by tile.

The options are composed by ``xent._options`` (the same formula on every backend). On
NumPy that composition runs on one ``[rows, C]`` tile at a time, inside the backend's tiling
and threads, so that masking, smoothing and class weights never allocate an array the size
of the input (the NumPy backend's memory bound holds with options too).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xent import _options
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
    """The dense loss with options, tile by tile (``_options.dense_rows`` on each tile)."""
    layout = Layout(logits.shape, axis)
    y3, m3, tile_opt = layout.view(labels), _mask(layout, logits, opt), _tile_options(opt, logits)

    def rows(tile: tuple[int, int, int, int], x: Array) -> Array:
        y = layout.rows(y3, tile, x.dtype, "y")
        where = None if m3 is None else layout.rows(m3, tile, None, "m")
        return _options.dense_rows(_TILE, y, x, 1, dataclasses.replace(tile_opt, where=where))

    return _weighted(backend._reduce_rows(logits, layout, rows), opt)


def sparse_tiled(backend: Any, labels: Array, logits: Array, axis: int,
                 opt: _options.Options) -> Array:
    """The sparse loss with options, tile by tile (``_options.sparse_rows`` on each tile)."""
    layout = Layout(logits.shape, axis)
    l2, m3, tile_opt = layout.view_reduced(labels), _mask(layout, logits, opt), _tile_options(
        opt, logits)

    def rows(tile: tuple[int, int, int, int], x: Array) -> Array:
        picked = layout.reduced_tile(l2, tile).reshape(-1)
        where = None if m3 is None else layout.rows(m3, tile, None, "m")
        return _options.sparse_rows(_TILE, picked, x, 1, dataclasses.replace(tile_opt,
                                                                             where=where))

    return _weighted(backend._reduce_rows(logits, layout, rows), opt)


def _mask(layout: Layout, logits: Array, opt: _options.Options) -> Array | None:
    """The ``where`` mask broadcast to the logits and seen like them (a view, no copy)."""
    if opt.where is None:
        return None
    return layout.view(np.broadcast_to(opt.where, logits.shape))


def _tile_options(opt: _options.Options, logits: Array) -> _options.Options:
    """``opt`` for the tiles: class weights in the compute dtype; weights applied after."""
    cw = opt.class_weights
    if cw is not None:
        cw = np.asarray(cw, compute_dtype(logits.dtype))
    return dataclasses.replace(opt, class_weights=cw, weights=None)


def _weighted(loss: Array, opt: _options.Options) -> Array:
    if opt.weights is None:
        return loss
    with quiet():
        return (loss * np.asarray(opt.weights)).astype(loss.dtype, copy=False)
