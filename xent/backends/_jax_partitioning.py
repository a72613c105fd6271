"""One program for one device, another where XLA's partitioner splits the arrays (GSPMD).

The one-device dense loss runs its masked-class fix under a ``lax.cond`` whose predicate
reads the whole batch (XLA:CPU cannot fuse a select into its reductions, so the fix runs
only when needed). Partitioned over a batch-sharded mesh, that predicate costs an all-reduce
on every call; over a sharded class axis, the loss ``sum_c y_c (lse - x_c)`` needs three
rounds (max, sum, label term). A partitioned program therefore runs the vocab-parallel steps
of :mod:`xent.backends._jax_sharded` instead (two rounds: the row max, then one fused sum;
no predicate), and one device keeps its fused kernels, compiled exactly as before.

Which program applies is known only when JAX lowers (``jit`` traces before it knows the
shardings), so :func:`by_partitioning` traces both under a ``lax.cond`` whose predicate is
the primitive ``xent_partitioned``, lowered to a constant from the lowering's axis context:
XLA removes the other branch before it optimises anything. The cond keeps every transform
(``grad``, ``vmap``, ``jvp``, ``checkpoint``, ``jax.export``) working unchanged. Arrays whose
type names a mesh axis (``jax.sharding.AxisType.Explicit``) take the partitioned program at
trace time (the one-device gather does not type-check on them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import mlir

Array = Any

partitioned_p = Primitive("xent_partitioned")
partitioned_p.def_abstract_eval(lambda: jax.core.ShapedArray((), np.bool_))
partitioned_p.def_impl(lambda: np.bool_(False))  # outside jit: one device's program


def _lower(ctx: Any) -> list[Any]:
    return [mlir.ir_constant(np.bool_(partitioned(ctx.module_context.axis_context)))]


mlir.register_lowering(partitioned_p, _lower)


def partitioned(axis_context: Any) -> bool:
    """Whether XLA's SPMD partitioner may split this lowering's arrays over devices: a
    ``jit`` over several devices, or a ``shard_map`` that leaves a mesh axis of size > 1 to
    the partitioner. One device, and each device's program inside a ``shard_map`` over
    every mesh axis, are not partitioned. An axis context this JAX does not have (they
    are not public API) counts as partitioned: that program is right everywhere."""
    from jax._src import sharding_impls

    if isinstance(axis_context, sharding_impls.ShardingContext):
        return axis_context.num_devices > 1
    if isinstance(axis_context, sharding_impls.SPMDAxisContext):
        mesh = axis_context.mesh
        return any(mesh.shape[a] > 1 for a in mesh.axis_names
                   if a not in axis_context.manual_axes)
    return True


def explicitly_sharded(x: Array) -> bool:
    """Whether the type of ``x`` names a mesh axis (explicit sharding), known while tracing."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    spec = getattr(sharding, "spec", ())
    return any(entry is not None for entry in spec)


def by_partitioning(one_device: Callable[..., Any], partitioned_: Callable[..., Any],
                    *args: Array) -> Any:
    """``one_device(*args)`` where the program is not partitioned, else
    ``partitioned_(*args)`` (both give the same values; see the module docstring)."""
    if any(explicitly_sharded(a) for a in args):
        return partitioned_(*args)
    return jax.lax.cond(partitioned_p.bind(), partitioned_, one_device, *args)
