"""The JAX conformance hooks' modes: how a computation on JAX arrays is run, NumPy out.

==========  ===============================================================================
``eager``   called as is (op by op; xent's own kernels are jitted functions)
``jit``     ``jax.jit``
``vmap``    ``jax.jit(jax.vmap(f))`` over a batch of two copies of every argument (stacked
            on a new leading axis): both entries must come back identical, the first is
            returned
``export``  ``jax.export.export(jax.jit(f))`` with every dimension of size >= 1 symbolic
            (one symbol per distinct size, shared by the arguments: a symbolic batch and
            class dimension), serialized, deserialized and called on the concrete arrays
``mesh``    ``jax.jit`` on arguments placed on an explicitly sharded mesh of the available
            devices (``"rows"`` x ``"classes"``): the arguments of the largest rank (logits,
            dense labels, tangents) split along their last axis over ``"classes"`` and
            their first over ``"rows"``, on as many devices as divide them; the others
            replicated. Sharded types take the partitioned program (``_jax_partitioning``)
            even on one device, so the catalog checks its vocab-parallel steps everywhere
==========  ===============================================================================

The computations are those of the hooks: the function under test (``run``), its value and
vector-Jacobian product with a cotangent of ones (``value_and_grad``), its ``jax.jvp``
(``jvp``). Transformed computations are cached, and so are the exports (per signature:
dtypes and symbolic shapes), so cases of one shape and dtype reuse compiled code: XLA
compiles per shape, at 0.2-0.8 s a program on a busy 2-core machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any
Computation = Callable[..., Any]

EXECUTION_MODES = ("eager", "jit")
TRANSFORM_MODES = ("vmap", "export", "mesh")
_INT32 = np.iinfo(np.int32)


def x64_for(*arrays: np.ndarray) -> contextlib.AbstractContextManager[Any]:
    """``jax.enable_x64`` for a call with float64 input or integers beyond int32 (the
    conformance hooks only; user code decides x64 itself)."""
    for a in arrays:
        a = np.asarray(a)
        if a.dtype == np.float64 or (a.dtype.kind in "iu" and a.size and not
                                     (_INT32.min <= a.min() and a.max() <= _INT32.max)):
            return jax.enable_x64(True)
    return contextlib.nullcontext()


def call(mode: str, computation: Computation, arrays: Sequence[Array]) -> Any:
    """``computation(*arrays)`` in ``mode``, its results (a tuple or one array, None kept)
    as NumPy."""
    if mode not in EXECUTION_MODES + TRANSFORM_MODES:
        raise ValueError(f"jax: unknown mode {mode!r}; expected one of "
                         f"{', '.join(EXECUTION_MODES + TRANSFORM_MODES)}")
    if mode == "vmap":
        return _first_of_identical(_transformed(mode, computation)(
            *[jnp.stack([a, a]) for a in arrays]))
    if mode == "mesh":
        arrays = on_mesh(arrays)
    return jax.tree.map(np.asarray, _transformed(mode, computation)(*arrays))


@lru_cache(maxsize=1024)
def _transformed(mode: str, computation: Computation) -> Computation:
    """``computation`` under ``mode``'s transform (cached: jit and export caches then hit)."""
    if mode in ("jit", "mesh"):
        return jax.jit(computation)
    if mode == "vmap":
        return jax.jit(jax.vmap(computation))
    if mode == "export":
        return _exported(computation)
    return computation


def on_mesh(arrays: Sequence[Array]) -> list[Array]:
    """``arrays`` placed on a ``"rows"`` x ``"classes"`` mesh (``mesh`` mode, above)."""
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    devices = jax.devices()
    rank = max(a.ndim for a in arrays)
    shape = next(a.shape for a in arrays if a.ndim == rank)
    classes = _divisor(len(devices), shape[-1]) if rank else 1
    rows = _divisor(len(devices) // classes, shape[0]) if rank >= 2 else 1
    mesh = jax.make_mesh((rows, classes), ("rows", "classes"), devices=devices[:rows * classes],
                         axis_types=(AxisType.Explicit, AxisType.Explicit))
    split = PartitionSpec(*(["rows"] if rank >= 2 else []), *[None] * (rank - 2),
                          *(["classes"] if rank else []))
    return [jax.device_put(a, NamedSharding(mesh, split if a.ndim == rank
                                            else PartitionSpec())) for a in arrays]


def _divisor(devices: int, size: int) -> int:
    """The largest number of devices, dividing ``devices``, that splits ``size`` evenly."""
    return max(k for k in range(1, devices + 1) if devices % k == 0 and size % k == 0)


def _first_of_identical(batched: Any) -> Any:
    """Entry 0 of every batched result, after checking that entry 1 equals it (two copies
    of one problem must give one answer: nothing leaks between batch entries)."""
    def first(x: Array) -> np.ndarray:
        a, b = np.asarray(x[0]), np.asarray(x[1])
        if not np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            raise RuntimeError(f"jax vmap: two copies of one problem gave different results "
                               f"(max |difference| {np.nanmax(diff):.3g})")
        return a
    return jax.tree.map(first, batched)


def _exported(computation: Computation) -> Computation:
    """A function that exports ``computation`` for the arguments' signature (cached per
    signature), round-trips the export through its serialized bytes and calls it."""
    exports: dict[Any, jax.export.Exported] = {}

    def run(*arrays: Array) -> Any:
        specs, signature = _symbolic_specs(arrays)
        key = (signature, bool(jax.config.read("jax_enable_x64")))
        if key not in exports:
            exported = jax.export.export(jax.jit(computation))(*specs)
            exports[key] = jax.export.deserialize(exported.serialize())
        return exports[key].call(*arrays)

    return run


def _symbolic_specs(arrays: Sequence[Array]) -> tuple[list[jax.ShapeDtypeStruct], Any]:
    """Shape specs where each dimension of size >= 1 is a symbol, one per distinct size
    (so that the labels' dimensions are the logits'); size 0 stays 0 (symbols are >= 1)."""
    names: dict[int, str] = {}
    shapes = []
    for a in arrays:
        dims = [names.setdefault(d, f"d{len(names)}") if d else "0" for d in a.shape]
        shapes.append(", ".join(dims) + ("," if len(dims) == 1 else ""))
    scope = jax.export.SymbolicScope()
    specs = [jax.ShapeDtypeStruct(jax.export.symbolic_shape(s, scope=scope), a.dtype)
             for s, a in zip(shapes, arrays)]
    return specs, tuple(zip(shapes, (str(a.dtype) for a in arrays)))


@lru_cache(maxsize=256)
def value_and_grad_of(fn: Computation, labels_differentiable: bool) -> Computation:
    """``(labels, logits) -> (fn(labels, logits), d/dlabels or None, d/dlogits)`` of the sum
    of ``fn``'s elements (a VJP with a cotangent of ones)."""
    def value_and_grads(y: Array, x: Array) -> tuple[Array, Array | None, Array]:
        if not labels_differentiable:
            value, pullback = jax.vjp(lambda x: fn(y, x), x)
            (dx,) = pullback(jnp.ones_like(value))
            return value, None, dx
        value, pullback = jax.vjp(fn, y, x)
        dy, dx = pullback(jnp.ones_like(value))
        return value, dy, dx
    return value_and_grads


@lru_cache(maxsize=256)
def jvp_of(fn: Computation, moving: tuple[bool, ...]) -> Computation:
    """``(*args, *tangents) -> jax.jvp(fn, args, tangents)``, with a tangent for each
    argument whose ``moving`` flag is set; the others are held constant."""
    def with_tangents(*arrays: Array) -> tuple[Array, Array]:
        args, tangents = arrays[:len(moving)], arrays[len(moving):]

        def of_moving(*moved: Array) -> Array:
            it = iter(moved)
            return fn(*[next(it) if m else a for a, m in zip(args, moving)])

        return jax.jvp(of_moving, [a for a, m in zip(args, moving) if m], list(tangents))
    return with_tangents


def release() -> None:
    """Forget the transformed computations cached above, and so their compiled programs and
    exports, then JAX's own caches of traces and executables (``Backend.release``; without
    ``jax.clear_caches`` the process still kept ~800 memory mappings a case). Every jitted
    function in the process, xent's kernels included, compiles again on its next call."""
    for cache in (_transformed, value_and_grad_of, jvp_of):
        cache.cache_clear()
    jax.clear_caches()
