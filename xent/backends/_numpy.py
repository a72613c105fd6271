"""The NumPy backend: the reference every other backend is measured against.

Accurate to a few eps relative (see ``_numpy_kernels``), tiled so that no temporary is
the size of the input, threaded for large inputs (``XENT_NUM_THREADS`` caps the threads).
float16 and bfloat16 (with ``ml_dtypes``) are computed in float32 and returned in their own
dtype. NumPy has no autodiff, so this backend computes values only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xent import _options
from xent.backends import _numpy_kernels as kernels
from xent.backends import _numpy_options as options
from xent.backends import _numpy_small as small
from xent.backends import _numpy_tiles as tiles
from xent.backends._base import Backend, numpy_dtype_name
from xent.backends._numpy_tiles import Layout, quiet, scratch

_COMPUTE: dict[np.dtype, np.dtype] = {
    np.dtype(np.float32): np.dtype(np.float32), np.dtype(np.float64): np.dtype(np.float64)
}


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 or float64: the dtype the kernels run in."""
    return _COMPUTE.get(dtype, np.dtype(np.float32))


def _is_tiny(logits: np.ndarray, axis: int) -> bool:
    """Few enough elements for plain Python floats to beat NumPy calls."""
    return (logits.size <= small.MAX_ELEMENTS and axis == logits.ndim - 1
            and logits.dtype in _COMPUTE)


def _direct_rows(logits: np.ndarray, axis: int) -> np.ndarray | None:
    """``logits`` as ``[rows, C]`` when one kernel call can take it as is (no tiling)."""
    if (
        axis == logits.ndim - 1
        and logits.size < min(tiles.TILE_ELEMENTS, tiles.PARALLEL_MIN_ELEMENTS)
        and logits.dtype in _COMPUTE
        and logits.flags.c_contiguous
    ):
        return logits.reshape(-1, logits.shape[-1])
    return None


class NumpyBackend(options.NumpyArrayOps, Backend):
    name = "numpy"
    module = "numpy"
    modes = ("eager",)
    has_autodiff = False
    relative_accuracy = True
    native_types = (np.ndarray,)

    def __init__(self) -> None:
        try:
            import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)

            self.dtypes = ("float16", "bfloat16", "float32", "float64")
        except ImportError:
            self.dtypes = ("float16", "float32", "float64")

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return x.shape

    def dtype_name(self, x: np.ndarray) -> str:
        return numpy_dtype_name(x.dtype)

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> np.ndarray:
        """Labels (``like`` given) keep their dtype: the kernels cast them block by block,
        so float64 labels for float32 logits cost no full-size copy."""
        if dtype is None or like is not None:
            return np.asarray(value)
        return np.asarray(value, dtype=np.dtype(dtype))

    def cast(self, x: np.ndarray, dtype: str) -> np.ndarray:
        return x  # the kernels cast labels block by block

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def few_labels(self, labels: np.ndarray) -> list[int] | None:
        if type(labels) is not np.ndarray or labels.size > 64:
            return None  # (a subclass's own tensors: its first_out_of_range decides)
        return labels.tolist() if labels.ndim == 1 else labels.ravel().tolist()

    def first_out_of_range(self, labels: np.ndarray, num_classes: int) -> int | None:
        few = self.few_labels(labels)
        if few is not None:  # a Python loop beats two NumPy reductions
            return next((value for value in few if not 0 <= value < num_classes), None)
        if labels.dtype.kind == "i":  # negative labels wrap to huge unsigned values
            unsigned = labels.view(np.dtype(f"u{labels.dtype.itemsize}"))
        else:
            unsigned = labels
        if unsigned.max() < num_classes:
            return None
        flat = labels.ravel()
        return int(flat[(flat < 0) | (flat >= num_classes)][0])

    def reduce(self, loss: np.ndarray, reduction: str) -> np.ndarray:
        if loss.size == 0 and reduction == "mean":
            return np.asarray(np.nan, loss.dtype)[()]
        compute = _compute_dtype(loss.dtype)
        total = np.add.reduce(loss, axis=None, dtype=compute)
        if reduction == "mean":
            total = total / compute.type(loss.size)
        return total.astype(loss.dtype)[()]

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: np.ndarray, axis: int) -> np.ndarray:
        if _is_tiny(logits, axis):
            return small.softmax(logits)
        rows = _direct_rows(logits, axis)
        if rows is not None:
            out = np.empty_like(rows)
            with quiet():
                kernels.softmax(rows, out)
            return out.reshape(logits.shape)
        return self._map_rows(logits, axis, lambda x, out: kernels.softmax(x, out))

    def log_softmax(self, logits: np.ndarray, axis: int) -> np.ndarray:
        if _is_tiny(logits, axis):
            return small.log_softmax(logits)
        rows = _direct_rows(logits, axis)
        if rows is not None:
            out = np.empty_like(rows)
            with quiet():
                kernels.log_softmax(rows, out, np.empty_like(rows))
            return out.reshape(logits.shape)

        def log_softmax_rows(x: np.ndarray, out: np.ndarray) -> None:
            kernels.log_softmax(x, out, scratch("e", x.shape, x.dtype))

        return self._map_rows(logits, axis, log_softmax_rows)

    def softmax_cross_entropy_with_logits(
        self, labels: np.ndarray, logits: np.ndarray, axis: int
    ) -> np.ndarray:
        if _is_tiny(logits, axis):
            return small.dense_loss(labels, logits)
        rows = _direct_rows(logits, axis)
        if rows is not None:
            y = labels.reshape(rows.shape).astype(rows.dtype, copy=False)
            with quiet():
                loss = kernels.dense_loss(y, rows, np.empty_like(rows))
            return loss.reshape(logits.shape[:-1])
        layout = Layout(logits.shape, axis)
        y3 = layout.view(labels)

        def dense_rows(tile: tuple[int, int, int, int], x: np.ndarray) -> np.ndarray:
            y = layout.rows(y3, tile, x.dtype, "y")
            return kernels.dense_loss(y, x, scratch("e", x.shape, x.dtype))

        return self._reduce_rows(logits, layout, dense_rows)

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: np.ndarray, logits: np.ndarray, axis: int
    ) -> np.ndarray:
        if _is_tiny(logits, axis):
            return small.sparse_loss(labels, logits)
        rows = _direct_rows(logits, axis)
        if rows is not None:
            with quiet():
                loss = kernels.sparse_loss(labels.reshape(-1), rows, np.empty_like(rows))
            return loss.reshape(logits.shape[:-1])
        layout = Layout(logits.shape, axis)
        l2 = layout.view_reduced(labels)

        def sparse_rows(tile: tuple[int, int, int, int], x: np.ndarray) -> np.ndarray:
            picked = layout.reduced_tile(l2, tile).reshape(-1)
            return kernels.sparse_loss(picked, x, scratch("e", x.shape, x.dtype))

        return self._reduce_rows(logits, layout, sparse_rows)

    # -- options: composed on whole arrays when tiny, else fused into the tile kernels -----
    def softmax_cross_entropy_with_options(
        self, labels: np.ndarray, logits: np.ndarray, axis: int, opt: _options.Options
    ) -> np.ndarray:
        if logits.size <= small.MAX_ELEMENTS:
            with quiet():  # float64 NumPy weights are cast here, not before (no copies)
                loss = _options.dense_rows(self, labels, logits, axis, opt)
            return loss.astype(logits.dtype, copy=False)
        return options.dense_tiled(self, labels, logits, axis, opt)

    def sparse_softmax_cross_entropy_with_options(
        self, labels: np.ndarray, logits: np.ndarray, axis: int, opt: _options.Options
    ) -> np.ndarray:
        if logits.size <= small.MAX_ELEMENTS:
            with quiet():
                loss = _options.sparse_rows(self, labels, logits, axis, opt)
            return loss.astype(logits.dtype, copy=False)
        return options.sparse_tiled(self, labels, logits, axis, opt)

    # -- tiling ---------------------------------------------------------------------------
    def _map_rows(self, logits: np.ndarray, axis: int, kernel: Any) -> np.ndarray:
        """Run ``kernel(x_rows, out_rows)`` over every tile; output has the input's shape."""
        out = np.empty(logits.shape, logits.dtype)
        if out.size == 0:
            return out
        layout = Layout(logits.shape, axis)
        x3, o3 = layout.view(logits), layout.view(out)
        compute = _compute_dtype(logits.dtype)

        def process(tile: tuple[int, int, int, int]) -> None:
            rows = layout.target_rows(o3, tile, compute)
            kernel(layout.rows(x3, tile, compute, "x"), rows)
            layout.write_rows(o3, tile, rows)

        layout.run(process)
        return out

    def _reduce_rows(self, logits: np.ndarray, layout: Layout, kernel: Any) -> np.ndarray:
        """Run ``kernel(tile, x_rows) -> loss_rows`` over every tile; one loss per row."""
        compute = _compute_dtype(logits.dtype)
        loss = np.empty(layout.reduced_shape, compute)
        if loss.size == 0:
            return loss.astype(logits.dtype)
        x3, l2 = layout.view(logits), layout.view_reduced(loss)

        def process(tile: tuple[int, int, int, int]) -> None:
            values = kernel(tile, layout.rows(x3, tile, compute, "x"))
            target = layout.reduced_tile(l2, tile)
            target[...] = values.reshape(target.shape)

        layout.run(process)
        if loss.dtype == logits.dtype:
            return loss
        with quiet():  # a float16 loss beyond 65504 is inf
            return loss.astype(logits.dtype)
