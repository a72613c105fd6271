"""The array operations ``xent._options`` and ``xent._api`` use, on whole dask arrays.

Lazy, like everything on this backend: each builds graph, none computes. They mirror
``NumpyArrayOps`` (the same dtypes: sums in float32 for 16-bit floats, ``take`` clipping an
index out of range).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import dask.array as da
import numpy as np

from xent import _options
from xent.backends._numpy_options import compute_dtype
from xent.backends._numpy_tiles import quiet

Array = Any  # dask.array.Array


def _take(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take(table, index, mode="clip")


def aligned(x: Any, like: Array) -> Array:
    """``x`` (broadcastable to ``like``) with ``like``'s rank and chunks, keeping its
    broadcast dimensions of size 1: ready for ``blockwise`` and elementwise operations
    with ``like``, without rechunking ``like``."""
    x = da.asarray(x)
    x = x.reshape((1,) * (like.ndim - x.ndim) + x.shape)
    return x.rechunk(tuple(c if n == m else (1,)
                           for c, n, m in zip(like.chunks, x.shape, like.shape)))


def block_options(opt: _options.Options | None, logits: Array, axis: int
                  ) -> tuple[list[tuple[Array | None, tuple[int, ...] | None]],
                             _options.Options | None]:
    """How the options reach the blocks of ``logits``: the ``where`` mask and the class
    weights as ``(array, indices)`` blockwise arguments aligned with its blocks (``(None,
    None)`` when absent), and the options without their arrays (row weights come later)."""
    if opt is None:
        return [(None, None), (None, None)], None
    ind = tuple(range(logits.ndim))
    where = None if opt.where is None else (aligned(opt.where, logits), ind)
    cw = None if opt.class_weights is None else (
        da.asarray(opt.class_weights).rechunk((logits.chunks[axis],)), (axis,))
    static = dataclasses.replace(opt, where=None, class_weights=None, weights=None)
    return [where or (None, None), cw or (None, None)], static


def _divide(total: np.ndarray, denominator: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    with quiet():  # 0 / 0 is NaN, on purpose
        return np.asarray(total / denominator).astype(out_dtype)


class DaskArrayOps:
    """``Backend.where``, ``take``, ``total``, ... for dask arrays."""

    def where(self, condition: Array, x: Any, y: Any) -> Array:
        if isinstance(y, (int, float)) and not isinstance(x, (int, float)):
            y = np.asarray(y, x.dtype)  # keep x's dtype (bfloat16 would become float64)
        elif isinstance(x, (int, float)) and not isinstance(y, (int, float)):
            x = np.asarray(x, y.dtype)
        return da.where(condition, x, y)

    def equal(self, x: Array, value: int) -> Array:
        return x == value

    def not_equal(self, x: Array, value: int) -> Array:
        return x != value

    def take(self, table: Array, index: Array) -> Array:
        """``table[index]``, each block of ``index`` reading the whole (small) ``table``."""
        table = da.asarray(table)
        ind = tuple(range(1, index.ndim + 1))
        return da.blockwise(_take, ind, table, (0,), index, ind, concatenate=True,
                            dtype=table.dtype, meta=np.empty((0,) * index.ndim, table.dtype))

    def row_dot(self, labels: Array, vector: Array, axis: int) -> Array:
        dtype = compute_dtype(np.result_type(labels.dtype, vector.dtype))
        shape = [-1 if d == axis else 1 for d in range(labels.ndim)]
        product = labels.astype(dtype) * da.asarray(vector).astype(dtype).reshape(shape)
        return product.sum(axis=axis, dtype=dtype)

    def broadcast_like(self, x: Array, like: Array) -> Array:
        return da.broadcast_to(aligned(x, like), like.shape, chunks=like.chunks)

    def total(self, x: Array) -> Array:
        return x.sum(dtype=compute_dtype(x.dtype))

    def count(self, mask: Array, like: Array) -> Array:
        return mask.sum(dtype=compute_dtype(like.dtype))

    def divide(self, total: Array, denominator: Array, like: Array) -> Array:
        dtype = np.dtype(like.dtype)
        return da.map_blocks(_divide, total, denominator, out_dtype=dtype, dtype=dtype,
                             meta=np.empty((), dtype))

    def reduce(self, loss: Array, reduction: str) -> Array:
        """``"sum"`` or ``"mean"`` in float32 for 16-bit floats (the mean of nothing: NaN)."""
        total = self.total(loss)
        if reduction == "mean":
            count = np.asarray(loss.size, total.dtype)
            return self.divide(total, da.asarray(count), loss)
        return total.astype(loss.dtype)
