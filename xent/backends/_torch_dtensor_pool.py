"""A gloo process group of worker processes that run what they are sent (tests, the
conformance modes of the DTensor backend, benchmarks).

A DTensor call needs every rank of its group to make it. :class:`Pool` starts ``world``
worker processes (forked by a forkserver that has imported torch, so a group starts in a
few seconds), which join a gloo group (a file store in a temporary directory); :meth:`Pool.call`
sends a function and its arguments to every rank (cloudpickle: closures travel too; the
backend object travels by name) and returns each rank's result. Exceptions come back as
exceptions, and a call that does not answer within ``TIMEOUT`` fails instead of hanging.
Like any use of ``multiprocessing``, a script that starts a pool needs the
``if __name__ == "__main__":`` guard.
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

TIMEOUT = timedelta(seconds=180)  # a call that hangs (a deadlock) fails instead of waiting


class Pool:
    """``world`` worker processes forming a gloo process group, running what they are sent."""

    def __init__(self, world: int) -> None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            context: Any = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["torch", "torch.distributed.tensor", "xent"])
        else:  # Windows
            context = multiprocessing.get_context("spawn")
        self.world = world
        self._store = tempfile.mkdtemp(prefix="xent-gloo-")
        pipes = [context.Pipe() for _ in range(world)]
        self._conns = [parent for parent, _ in pipes]
        self._procs = [context.Process(
            target=_serve, daemon=True, name=f"xent-dtensor-rank{rank}",
            args=(rank, world, os.path.join(self._store, "store"), child, list(sys.path)))
            for rank, (_, child) in enumerate(pipes)]
        for process in self._procs:
            process.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """``fn(*args)`` on every rank: the results, by rank. An exception on the ranks is
        raised here (its type when built in, else RuntimeError)."""
        try:
            import cloudpickle  # the catalog's functions are closures
        except ImportError as error:
            raise ImportError("dtensor: the worker pool sends functions with cloudpickle "
                              "(pip install cloudpickle)") from error

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
_registered: list[bool] = []  # atexit.register(close) done


def pool(world: int = 2) -> Pool:
    """The pool of ``world`` ranks, started on first use and closed at exit."""
    if world in _pools and not all(p.is_alive() for p in _pools[world]._procs):
        close_pool(world)  # a rank died, or a call timed out: start afresh
    if world not in _pools:
        if not _registered:
            atexit.register(close)
            _registered.append(True)
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


_meshes: dict[tuple[int, ...], Any] = {}


def mesh(shape: tuple[int, ...]) -> Any:
    """The device mesh of this shape over the group's ranks (made once)."""
    from torch.distributed.device_mesh import init_device_mesh

    if shape not in _meshes:
        _meshes[shape] = init_device_mesh("cpu", shape)
    return _meshes[shape]
