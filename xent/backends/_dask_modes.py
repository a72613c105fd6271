"""How the conformance suite runs the Dask backend: chunkings and schedulers.

===============  ================================================================
``threads``      every dimension of the logits but the last in two chunks, the last
                 whole (the class axis in one chunk when it is last); threads
``split``        every dimension in chunks of a third (the class axis split over up
                 to three chunks, whichever it is); threads
``distributed``  the ``split`` chunks, computed on a ``dask.distributed`` cluster: the
                 current client, else a ``LocalCluster`` of 2 worker processes started
                 once and closed at exit
===============  ================================================================

Labels and options are chunked like the logits where they have their shape.
"""

from __future__ import annotations

import atexit
import math
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

MODES = ("threads", "split")
TRANSFORM_MODES = ("distributed",)

#: The catalog cases that exercise what sharding changes (chunk boundaries through masked
#: classes, maxima, NaN and infinite rows, ranks and axes, options); each mode runs them in
#: its dtypes. The conformance runner may restrict a Dask mode to these (the full catalog
#: runs too: it passes, in about 0.1-0.3 s per case and dtype on 2 cores).
SHARDED_CASES = (
    "seed", "random_10", "logits_1e4", "near_max", "confident", "masked",
    "masked_all_but_one", "nan_row", "inf_rows", "unnormalised_labels", "zero_labels",
    "rank1", "rank3_axis0", "rank3_axis1", "one_class", "large_classes", "zero_batch",
    "sparse_edges", "sparse_out_of_range", "opt_ignore_index", "opt_combined", "opt_masked",
    "opt_masked_smoothing", "opt_nan_row", "opt_rank3_axis1",
)
MODE_CASES = {"threads": SHARDED_CASES, "split": SHARDED_CASES,
              "distributed": ("seed", "masked_all_but_one", "opt_combined",
                              "sparse_out_of_range")}
MODE_DTYPES = {"threads": ("float32",), "split": ("float32", "float64"),
               "distributed": ("float32",)}

_cluster: list[Any] = []  # the LocalCluster and Client this module started


def chunks(shape: tuple[int, ...], mode: str) -> tuple[int, ...]:
    """Chunk sizes of an array of ``shape`` in ``mode``."""
    if mode == "threads":
        return tuple(max(1, math.ceil(n / 2)) for n in shape[:-1]) + shape[-1:]
    return tuple(max(1, math.ceil(n / 3)) for n in shape)


def lazy(args: tuple[np.ndarray, ...], mode: str) -> list[Any]:
    """The NumPy ``args`` as dask arrays; the last is the logits, whose chunks the others
    share where they have its shape."""
    logits_chunks = chunks(args[-1].shape, mode) if args else ()
    return [da.from_array(a, chunks=logits_chunks if a.shape == args[-1].shape
                          else chunks(a.shape, mode)) for a in args]


def client() -> Any:
    """The current ``dask.distributed`` client, else one on a ``LocalCluster`` (2 worker
    processes, 1 thread each) started now and closed when the process exits."""
    from distributed import Client, LocalCluster, default_client

    try:
        return default_client()
    except ValueError:
        pass
    if not _cluster:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        _cluster[:] = [cluster, Client(cluster, set_as_default=False)]
        atexit.register(close)
    return _cluster[1]


def close() -> None:
    """Close the cluster :func:`client` started, if any."""
    while _cluster:
        _cluster.pop().close()


def run(mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
    """``fn(*args)`` on dask arrays chunked for ``mode``; the result, which must be lazy,
    computed on ``mode``'s scheduler, as NumPy."""
    if mode not in MODES + TRANSFORM_MODES:
        raise ValueError(f"dask: unknown mode {mode!r}")
    result = fn(*lazy(args, "split" if mode == "distributed" else mode))
    if not isinstance(result, da.Array):
        raise TypeError(f"dask: the result is a {type(result).__name__}, not a lazy dask array")
    if mode == "distributed":
        return np.asarray(client().compute(result, sync=True))
    return np.asarray(result.compute(scheduler="threads"))
