"""The Dask backend: dask arrays in, lazy dask arrays out, computed chunk by chunk.

Nothing is computed by an xent call: each builds graph, and ``.compute()`` (threads, or a
``dask.distributed`` cluster) runs it. The class axis may be in one chunk or split over
several; the logits are never gathered:

- losses, one pass over the logits: each block gives its rows' statistics ``(m, r, b, n)``
  (``_dask_blocks``, tile by tile with the NumPy backend's tiles and composing the options
  with ``xent._options``), a tree reduction combines them across the class chunks
  (``dask.array.reduction`` with ``_dask_kernels.combine``), and ``b + log1p(r) n`` is the
  loss: the NumPy reference's formula, accurate to a few eps relative.
- ``softmax`` / ``log_softmax``: the NumPy backend on each block when the class axis is in
  one chunk; else the row statistics first, then each block normalised (two passes).

A sparse label out of range gives a NaN row (checking it would need a computation).
float16 and bfloat16 are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np

from xent import _options
from xent.backends import _dask_blocks as blocks
from xent.backends import _dask_kernels as kernels
from xent.backends import _dask_modes
from xent.backends._base import Backend, numpy_dtype_name
from xent.backends._dask_ops import DaskArrayOps, block_options
from xent.backends._numpy import NumpyBackend
from xent.backends._numpy_options import compute_dtype

Array = Any  # dask.array.Array
_NUMPY = NumpyBackend()


def _keep(stats: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return stats  # the statistics of a block already have size 1 along the class axis


def _empty(ndim: int, dtype: Any) -> np.ndarray:
    return np.empty((0,) * ndim, dtype)


class DaskBackend(DaskArrayOps, Backend):
    """``dask.array`` logits: lazy results, the class axis in one chunk or several."""

    name = "dask"
    module = "dask"
    modes = _dask_modes.MODES
    transform_modes = _dask_modes.TRANSFORM_MODES
    tracing_modes = _dask_modes.MODES + _dask_modes.TRANSFORM_MODES  # out of range: NaN rows
    has_autodiff = False
    relative_accuracy = True
    #: mode -> the catalog cases and dtypes a sharded conformance run needs (a subset)
    mode_cases = _dask_modes.MODE_CASES
    mode_dtypes = _dask_modes.MODE_DTYPES

    def __init__(self) -> None:
        self.dtypes = _NUMPY.dtypes

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, da.Array)

    def shape(self, x: Array) -> tuple[int, ...]:
        if any(math.isnan(s) for s in x.shape):
            raise ValueError(
                f"dask: an array of shape {x.shape} has unknown chunk sizes (NaN), so it "
                "cannot be checked or aligned with the logits; call .compute_chunk_sizes() "
                "on it first")
        return x.shape

    def dtype_name(self, x: Array) -> str:
        return numpy_dtype_name(x.dtype)

    def asarray(self, value: Any, *, like: Array | None = None,
                dtype: str | None = None) -> Array:
        """A NumPy array or sequence as a dask array: chunked like ``like`` when it has its
        shape (labels), else in Dask's automatic chunks."""
        if isinstance(value, da.Array):
            return value if dtype is None else self.cast(value, dtype)
        array = np.asarray(value) if dtype is None else np.asarray(value, np.dtype(dtype))
        if like is not None and array.shape == like.shape:
            return da.from_array(array, chunks=like.chunks)
        return da.from_array(array, chunks="auto")

    def cast(self, x: Array, dtype: str) -> Array:
        return x if numpy_dtype_name(x.dtype) == dtype else x.astype(np.dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x.compute() if isinstance(x, da.Array) else x)

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: Array, axis: int) -> Array:
        return self._normalised(logits, axis, log=False)

    def log_softmax(self, logits: Array, axis: int) -> Array:
        return self._normalised(logits, axis, log=True)

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                          axis: int) -> Array:
        return self._dense(labels, logits, axis, None)

    def sparse_softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                                 axis: int) -> Array:
        return self._sparse(labels, logits, axis, None)

    def softmax_cross_entropy_with_options(self, labels: Array, logits: Array, axis: int,
                                           options: _options.Options) -> Array:
        return self._dense(labels, logits, axis, options)

    def sparse_softmax_cross_entropy_with_options(self, labels: Array, logits: Array,
                                                  axis: int, options: _options.Options
                                                  ) -> Array:
        return self._sparse(labels, logits, axis, options)

    # -- the steps --------------------------------------------------------------------------
    def _normalised(self, logits: Array, axis: int, log: bool) -> Array:
        if logits.numblocks[axis] == 1:  # whole rows in every block: the NumPy backend
            kernel = _NUMPY.log_softmax if log else _NUMPY.softmax
            return logits.map_blocks(kernel, axis, dtype=logits.dtype,
                                     meta=_empty(logits.ndim, logits.dtype))
        stats = self._row_stats(logits, axis, blocks.lse_stats)  # pass 1: m, r per row
        ind = tuple(range(logits.ndim))
        reduced = ind[:axis] + ind[axis + 1 :] + (logits.ndim,)
        return da.blockwise(blocks.normalise, ind, logits, ind, stats, reduced,  # pass 2
                            concatenate=True, axis=axis, log=log, dtype=logits.dtype,
                            meta=_empty(logits.ndim, logits.dtype))

    def _dense(self, labels: Array, logits: Array, axis: int,
               opt: _options.Options | None) -> Array:
        labels = labels.rechunk(logits.chunks)
        arrays, static = block_options(opt, logits, axis)
        stats = self._row_stats(logits, axis, blocks.dense_stats,
                                (labels, tuple(range(logits.ndim))), *arrays, opt=static)
        return self._loss(stats, logits, opt)

    def _sparse(self, labels: Array, logits: Array, axis: int,
                opt: _options.Options | None) -> Array:
        labels = labels.rechunk(logits.chunks[:axis] + logits.chunks[axis + 1 :])
        ind = tuple(range(logits.ndim))
        arrays, static = block_options(opt, logits, axis)
        stats = self._row_stats(logits, axis, blocks.sparse_stats,
                                (labels, ind[:axis] + ind[axis + 1 :]), *arrays,
                                num_classes=logits.shape[axis], opt=static)
        cw = None if opt is None or opt.reshapes_labels else opt.class_weights
        return self._loss(stats, logits, opt, None if cw is None else self.take(
            da.asarray(cw).astype(compute_dtype(logits.dtype)), labels))

    def _row_stats(self, logits: Array, axis: int, block: Any,
                   *arrays: tuple[Array | None, tuple[int, ...] | None], **kwargs: Any) -> Array:
        """One pass over the logits: ``block`` gives each block's row statistics
        (``[..., 1, ..., 4]``), combined across the class chunks by a tree reduction into
        ``[..., 4]`` (the logits' shape without ``axis``, then the fields)."""
        ind, fields = tuple(range(logits.ndim)), logits.ndim
        compute = compute_dtype(logits.dtype)
        classes = da.arange(logits.shape[axis], chunks=logits.chunks[axis])
        args: list[Any] = [logits, ind, classes, (axis,)]
        for array, dims in arrays:
            args += [array, dims]
        stats = da.blockwise(block, ind + (fields,), *args, new_axes={fields: kernels.FIELDS},
                             adjust_chunks={axis: 1}, dtype=compute,
                             meta=_empty(logits.ndim + 1, compute), axis=axis, **kwargs)
        return da.reduction(stats, _keep, kernels.combine, axis=axis, combine=kernels.combine,
                            dtype=compute, concatenate=True, meta=_empty(logits.ndim, compute))

    def _loss(self, stats: Array, logits: Array, opt: _options.Options | None,
              class_weights: Array | None = None) -> Array:
        """The loss from the combined statistics, times the class weights of sparse labels
        (when given here) and the row weights, in the dtype of the logits."""
        compute = compute_dtype(logits.dtype)
        loss = stats.map_blocks(kernels.loss, drop_axis=stats.ndim - 1, dtype=compute,
                                meta=_empty(stats.ndim - 1, compute))
        if class_weights is not None:
            loss = loss * class_weights
        if opt is not None and opt.weights is not None:
            loss = loss * opt.weights
        return loss.astype(logits.dtype)

    # -- conformance hooks ------------------------------------------------------------------
    def run(self, mode: str, fn: Any, *args: np.ndarray) -> np.ndarray:
        """``fn`` on the NumPy ``args`` as dask arrays chunked for ``mode`` (the last is the
        logits); its result must be lazy, and is computed on ``mode``'s scheduler."""
        return _dask_modes.run(mode, fn, *args)

