"""How the conformance suite runs the DTensor backend: a gloo group of 2 worker processes.

=========  ===================================================================================
``last``   the logits sharded on their last axis (``Shard(ndim - 1)``: the class axis of most
           catalog cases, uneven when C is odd) over a 1-D mesh of 2 ranks; labels of the
           logits' shape as DTensors placed like them, sparse labels replicated DTensors
``first``  the logits sharded on their first axis (the rows of most cases; the class axis of
           rank-1 and class-axis-0 cases); labels of the logits' shape replicated DTensors,
           sparse labels plain tensors of the global values
=========  ===================================================================================

The runner runs in one process, and a DTensor needs every rank of its group to make the
same call. So each call goes to the 2 worker processes of ``_torch_dtensor_pool.pool(2)``
(a gloo group, started on first use, closed at exit): the function travels by cloudpickle
(the catalog's closures; the backend object by name), the NumPy arrays by pickle. Each rank
builds its DTensors from the global arrays (no communication), makes the call and returns
the full result; the ranks must agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xent.backends._torch_dtensor_pool import mesh, pool

MODES = ("last", "first")
#: The catalog cases the test suite runs in these modes (``xent conformance`` runs them all):
#: uneven shards (C = 3, 5), masked and NaN rows across the split, ranks and axes, options.
MODE_CASES = {
    "last": ("seed", "confident", "masked", "nan_row", "inf_rows", "zero_labels", "rank1",
             "rank3_axis1", "sparse_out_of_range", "opt_ignore_index", "opt_combined",
             "opt_masked"),
    "first": ("seed", "masked_all_but_one", "rank1", "rank3_axis0", "zero_batch",
              "opt_rank3_axis1"),
}
MODE_DTYPES = {"last": ("float32", "float64"), "first": ("float64",)}


# -- what a rank does in each mode -----------------------------------------------------------
def _inputs(mode: str, args: tuple[np.ndarray, ...]) -> list[Any]:
    """The NumPy ``args`` (the last is the logits) as this mode places them."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from xent import backends

    logits = args[-1]
    m = mesh((2,))
    out = []
    for a in args:
        t = backends.get("torch").asarray(a.copy())
        if a is logits or a.shape == logits.shape and mode == "last":
            out.append(distribute_tensor(t, m, [Shard(a.ndim - 1 if mode == "last" else 0)],
                                         src_data_rank=None))
        elif a.shape == logits.shape or mode == "last":
            out.append(distribute_tensor(t, m, [Replicate()], src_data_rank=None))
        else:
            out.append(t)  # plain global values
    return out


def _numpy(x: Any) -> np.ndarray | None:
    from xent import backends

    return None if x is None else backends.get("dtensor").to_numpy(x)


def _run(mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray | None:
    return _numpy(fn(*_inputs(mode, args)))


def _value_and_grad(mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray,
                    logits: np.ndarray) -> tuple[Any, ...]:
    import torch
    from torch.distributed.tensor import DTensor

    y, x = _inputs(mode, (labels, logits))
    x.requires_grad_(True)
    inputs = (y.requires_grad_(True), x) if y.is_floating_point() else (x,)
    value = fn(y, x)
    whole = value.full_tensor() if isinstance(value, DTensor) else value
    grads = torch.autograd.grad(whole.sum(), inputs, allow_unused=True)
    dlogits = grads[-1] if grads[-1] is not None else torch.zeros_like(x)
    return (_numpy(whole), _numpy(grads[0]) if len(grads) == 2 else None, _numpy(dlogits))


def _agreed(mode: str, results: list[Any]) -> Any:
    """Rank 0's result, after checking every rank's is the same (NaN equal to NaN)."""
    flat = [r if isinstance(r, tuple) else (r,) for r in results]
    for rank, other in enumerate(flat[1:], 1):
        for a, b in zip(flat[0], other):
            if (a is None) != (b is None) or a is not None and not np.array_equal(
                    a, b, equal_nan=True):
                raise AssertionError(f"dtensor/{mode}: rank {rank}'s result differs from "
                                     "rank 0's")
    return results[0]


def _check(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"dtensor: unknown mode {mode!r}")


def run(mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
    """``fn`` on the NumPy ``args`` placed for ``mode`` on 2 ranks; the result as NumPy."""
    _check(mode)
    return _agreed(mode, pool(2).call(_run, mode, fn, *args))


def value_and_grad(mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray,
                   logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``fn(labels, logits)`` and the gradients of its sum, computed on 2 ranks."""
    _check(mode)
    return _agreed(mode, pool(2).call(
        _value_and_grad, mode, fn, labels, logits))
