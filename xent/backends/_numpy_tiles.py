"""Tiling and threads for the NumPy backend: no temporary the size of the input.

An input of shape ``[..., C, ...]`` is viewed as ``[outer, C]`` (class axis last) or
``[outer, C, inner]``, and processed in tiles of about ``TILE_ELEMENTS`` elements that
stay in cache. A tile is handed to the row kernels as ``[rows, C]``: a view of the input
when it already is one in the compute dtype, else a copy into a per-thread scratch buffer
(casting float16/bfloat16 to float32, or moving the class axis last). Large inputs are
split between threads; NumPy releases the GIL inside its loops, so they run in parallel.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Elements per tile on several threads: 2 MiB of float32 per scratch array. Smaller tiles
#: fit L2 better but cost more GIL hand-offs between the threads (each NumPy call releases and
#: retakes it); measured best here between 2**18 and 2**20 (benchmarks/numpy_backend.py).
TILE_ELEMENTS = 1 << 19
#: Elements per tile on one thread (``XENT_NUM_THREADS=1``, inputs too small to split, Dask
#: blocks): the tile, its scratch and its labels (512 KiB each in float32) stay in a 2 MiB L2
#: between passes, with no hand-off to pay for; 1.2-1.35x faster than ``TILE_ELEMENTS`` there
#: (2**16 and 2**18 close behind; 2**15 pays NumPy's per-call cost).
SINGLE_THREAD_TILE_ELEMENTS = 1 << 17
PARALLEL_MIN_ELEMENTS = 1 << 17  # below this, threads cost more than they save

_buffers: dict[int, dict[str, np.ndarray]] = {}  # thread id -> name -> reusable buffer
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def num_threads() -> int:
    env = os.environ.get("XENT_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread buffer reused across calls, grown when too small."""
    size = math.prod(shape)
    buffers = _buffers.get(threading.get_ident())
    if buffers is None:
        buffers = _buffers[threading.get_ident()] = {}
    buf = buffers.get(name)
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = buffers[name] = np.empty(max(size, 1), dtype)
    return buf[:size].reshape(shape)


def release_scratch() -> None:
    """Drop every thread's scratch buffers (they are allocated again when needed)."""
    _buffers.clear()


class Layout:
    """An input of ``shape`` seen as ``[outer, classes]`` or ``[outer, classes, inner]``."""

    def __init__(self, shape: tuple[int, ...], axis: int) -> None:
        self.outer = math.prod(shape[:axis])
        self.classes = shape[axis]
        self.inner = math.prod(shape[axis + 1 :])
        self.reduced_shape = shape[:axis] + shape[axis + 1 :]
        self.size = self.outer * self.classes * self.inner
        self.workers = (min(num_threads(), self.outer)
                        if self.size >= PARALLEL_MIN_ELEMENTS else 1)
        tile = TILE_ELEMENTS if self.workers > 1 else min(TILE_ELEMENTS,
                                                          SINGLE_THREAD_TILE_ELEMENTS)
        if self.inner == 1:
            self.tile_outer, self.tile_inner = max(1, tile // self.classes), 1
        else:
            self.tile_inner = min(self.inner, max(1, tile // self.classes))
            self.tile_outer = max(1, tile // (self.classes * self.tile_inner))

    def view(self, a: np.ndarray) -> np.ndarray:
        """``a`` (shape of the input) as 2-D / 3-D; a copy only if its strides forbid a view."""
        if self.inner == 1:
            return a.reshape(self.outer, self.classes)
        return a.reshape(self.outer, self.classes, self.inner)

    def view_reduced(self, a: np.ndarray) -> np.ndarray:
        """``a`` (shape without the class axis) as ``[outer]`` or ``[outer, inner]``."""
        return a.reshape(self.outer) if self.inner == 1 else a.reshape(self.outer, self.inner)

    def tiles(self, start: int, stop: int):
        for o0 in range(start, stop, self.tile_outer):
            o1 = min(o0 + self.tile_outer, stop)
            for i0 in range(0, self.inner, self.tile_inner):
                yield o0, o1, i0, min(i0 + self.tile_inner, self.inner)

    def rows(self, a: np.ndarray, tile: tuple[int, int, int, int], dtype: np.dtype | None,
             name: str) -> np.ndarray:
        """The tile of ``a`` (a :meth:`view`) as C-contiguous ``[rows, classes]``."""
        o0, o1, i0, i1 = tile
        if a.ndim == 2:
            block = a[o0:o1]
            if (dtype is None or block.dtype == dtype) and block.flags.c_contiguous:
                return block
        else:
            block = a[o0:o1, :, i0:i1].transpose(0, 2, 1)
        buf = scratch(name, block.shape, dtype or block.dtype)
        np.copyto(buf, block, casting="unsafe")
        return buf.reshape(-1, self.classes)

    def reduced_tile(self, a: np.ndarray, tile: tuple[int, int, int, int]) -> np.ndarray:
        """The tile of a :meth:`view_reduced` array, as a view (write target) or flat."""
        o0, o1, i0, i1 = tile
        return a[o0:o1] if a.ndim == 1 else a[o0:o1, i0:i1]

    def target_rows(self, dest: np.ndarray, tile: tuple[int, int, int, int],
                    dtype: np.dtype) -> np.ndarray:
        """Where a kernel writes this tile's ``[rows, classes]`` results: the tile of ``dest``
        (a fresh output, seen through :meth:`view`) itself when it has that layout and dtype,
        else scratch that :meth:`write_rows` copies back."""
        o0, o1, i0, i1 = tile
        if dest.ndim == 2 and dest.dtype == dtype:
            return dest[o0:o1]
        return scratch("out", ((o1 - o0) * (i1 - i0), self.classes), dtype)

    def write_rows(self, dest: np.ndarray, tile: tuple[int, int, int, int],
                   rows: np.ndarray) -> None:
        """Copy :meth:`target_rows` results into ``dest`` unless they were written in place."""
        o0, o1, i0, i1 = tile
        if dest.ndim == 2:
            if dest.dtype != rows.dtype:
                np.copyto(dest[o0:o1], rows, casting="unsafe")
        else:
            target = dest[o0:o1, :, i0:i1].transpose(0, 2, 1)
            np.copyto(target, rows.reshape(target.shape), casting="unsafe")

    def run(self, process: Callable[[tuple[int, int, int, int]], None]) -> None:
        """Call ``process(tile)`` for every tile, on several threads for large inputs."""
        workers = self.workers
        bounds = [self.outer * k // workers for k in range(workers + 1)]

        def work(k: int) -> None:
            with quiet():
                for tile in self.tiles(bounds[k], bounds[k + 1]):
                    process(tile)

        if workers == 1:
            return work(0)

        futures = [_executor().submit(work, k) for k in range(1, workers)]
        try:
            work(0)
        finally:
            for future in futures:
                future.result()


try:  # NumPy 2: np.errstate costs ~2.5 us; setting its context variable directly ~0.2 us
    from numpy._core._ufunc_config import _extobj_contextvar  # type: ignore[attr-defined]
    from numpy._core.umath import _make_extobj

    _IGNORE = _make_extobj(all="ignore")

    class quiet:  # noqa: N801 (used like np.errstate)
        """Silence floating-point warnings: NaN and inf are results here, not accidents."""

        __slots__ = ("_token",)

        def __enter__(self) -> None:
            self._token = _extobj_contextvar.set(_IGNORE)

        def __exit__(self, *exc_info: object) -> None:
            _extobj_contextvar.reset(self._token)

except ImportError:  # other NumPy versions: the public, slower way

    def quiet() -> contextlib.AbstractContextManager[None]:  # type: ignore[no-redef]
        return np.errstate(all="ignore")


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max(1, num_threads() - 1), thread_name_prefix="xent")
    return _pool
