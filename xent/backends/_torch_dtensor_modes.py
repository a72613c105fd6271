"""How the conformance suite runs the DTensor backend: a gloo group of 2 worker processes.

=========  ===================================================================================
``last``   the logits sharded on their last axis (``Shard(ndim - 1)``: the class axis of most
           catalog cases, uneven when C is odd) over a 1-D mesh of 2 ranks; labels of the
           logits' shape as DTensors placed like them, sparse labels replicated DTensors
``first``  the logits sharded on their first axis (the rows of most cases; the class axis of
           rank-1 and class-axis-0 cases); labels as plain tensors of the global values
=========  ===================================================================================

The runner runs in one process, and a DTensor needs every rank of its group to make the
same call. So each call goes to a :class:`Pool` of worker processes that form a gloo group
(started on first use by a forkserver that has imported torch, closed at exit): the function
travels by cloudpickle (the catalog's closures; the backend object by name), the NumPy
arrays by pickle. Each rank builds its DTensors from the global arrays (no communication),
makes the call and returns the full result; the ranks must agree exactly. The tests use the
same pools to run their checks on 2 and 4 ranks (:func:`pool`).
"""

from __future__ import annotations

import atexit
import builtins
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np

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
TIMEOUT = timedelta(seconds=180)  # a call that hangs (a deadlock) fails instead of waiting


class Pool:
    """``world`` worker processes forming a gloo process group, running what they are sent."""

    def __init__(self, world: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "torch.distributed.tensor", "xent"])
        self.world = world
        self._store = tempfile.mkdtemp(prefix="xent-gloo-")
        pipes = [context.Pipe() for _ in range(world)]
        self._conns = [parent for parent, _ in pipes]
        self._procs = [context.Process(  # type: ignore[attr-defined]
            target=_serve, daemon=True, name=f"xent-dtensor-rank{rank}",
            args=(rank, world, os.path.join(self._store, "store"), child, list(sys.path)))
            for rank, (_, child) in enumerate(pipes)]
        for process in self._procs:
            process.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """``fn(*args)`` on every rank: the results, by rank. An exception on the ranks is
        raised here (its type when built in, else RuntimeError)."""
        import cloudpickle  # the catalog's functions are closures

        payload = cloudpickle.dumps((fn, args))
        for conn in self._conns:
            conn.send_bytes(payload)
        replies = []
        for rank, conn in enumerate(self._conns):
            if not conn.poll(TIMEOUT.total_seconds()):
                self.close()
                raise TimeoutError(f"dtensor: rank {rank} did not answer in {TIMEOUT}")
            replies.append(pickle.loads(conn.recv_bytes()))
        for status, value in replies:
            if status == "error":
                name, message = value
                kind = getattr(builtins, name, None)
                if isinstance(kind, type) and issubclass(kind, Exception):
                    raise kind(message)
                raise RuntimeError(f"{name}: {message}")
        return [value for _, value in replies]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send_bytes(b"")
            except OSError:
                pass
        for process in self._procs:
            process.join(10)
            if process.is_alive():
                process.terminate()
        shutil.rmtree(self._store, ignore_errors=True)


def _serve(rank: int, world: int, store: str, conn: Any, path: list[str]) -> None:
    """A rank: join the group, then run each call received until an empty message."""
    sys.path[:] = path
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # ranks share the machine's cores
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world, timeout=TIMEOUT)
    try:
        while payload := conn.recv_bytes():
            try:
                fn, args = pickle.loads(payload)
                reply: tuple[str, Any] = ("ok", fn(*args))
            except BaseException as error:  # noqa: BLE001 - every failure goes to the caller
                text = str(error) or traceback.format_exc(limit=3)
                reply = ("error", (type(error).__name__, text))
            conn.send_bytes(pickle.dumps(reply))
    finally:
        dist.destroy_process_group()


_pools: dict[int, Pool] = {}


def pool(world: int = 2) -> Pool:
    """The pool of ``world`` ranks, started on first use and closed at exit."""
    if world not in _pools:
        if not _pools:
            atexit.register(close)
        _pools[world] = Pool(world)
    return _pools[world]


def close_pool(world: int) -> None:
    """Stop the pool of ``world`` ranks, if started."""
    if world in _pools:
        _pools.pop(world).close()


def close() -> None:
    """Stop every pool."""
    while _pools:
        _pools.popitem()[1].close()


# -- what a rank does in each mode -----------------------------------------------------------
_meshes: dict[tuple[int, ...], Any] = {}


def mesh(shape: tuple[int, ...]) -> Any:
    """The device mesh of this shape over the group's ranks (made once)."""
    from torch.distributed.device_mesh import init_device_mesh

    if shape not in _meshes:
        _meshes[shape] = init_device_mesh("cpu", shape)
    return _meshes[shape]


def _inputs(mode: str, args: tuple[np.ndarray, ...]) -> list[Any]:
    """The NumPy ``args`` (the last is the logits) as this mode places them."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from xent.backends._torch import _from_numpy

    logits = args[-1]
    dim = logits.ndim - 1 if mode == "last" else 0
    out = []
    for a in args:
        t = _from_numpy(a.copy())
        if a.shape == logits.shape and a is not logits and mode == "first":
            out.append(t)  # plain global labels
        elif a.shape == logits.shape and logits.ndim:
            out.append(distribute_tensor(t, mesh((2,)), [Shard(dim)], src_data_rank=None))
        elif mode == "first":
            out.append(t)
        else:
            out.append(distribute_tensor(t, mesh((2,)), [Replicate()], src_data_rank=None))
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
    return _agreed(mode, pool(2).call(_run, mode, fn, *args))  # type: ignore[no-any-return]


def value_and_grad(mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray,
                   logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``fn(labels, logits)`` and the gradients of its sum, computed on 2 ranks."""
    _check(mode)
    return _agreed(mode, pool(2).call(  # type: ignore[no-any-return]
        _value_and_grad, mode, fn, labels, logits))
