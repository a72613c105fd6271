"""``zero_safe_multiply(a, b)``: ``a * b`` where zero times an infinity is 0, as a JAX primitive.

The dense loss's derivative in the labels is ``lse - logits``: ``+inf`` at a masked class
(logit ``-inf``). Its tangent ``sum_c (lse - logits_c) * dlabels_c`` and its transpose
``cotangent * (lse - logits_c)`` must give 0, not ``0 * inf = NaN``, where ``dlabels_c``
or the cotangent is 0: a label that does not move contributes nothing (``jacfwd`` in the
labels, and ``jacrev`` rows of the other examples, are otherwise NaN). JAX transposes a
``custom_jvp`` rule's tangent expression, so that expression must be linear in the tangent;
a ``where(dlabels == 0, ...)`` is not (its predicate reads the tangent) and
``jax.custom_derivatives.linear_call`` has no batching rule. Hence a primitive: bilinear
like ``lax.mul`` (its JVP and transposes are itself), elementwise for ``vmap``, lowered to
``select(a == 0 & isinf(b) | b == 0 & isinf(a), 0, a * b)``, so that ``jit``, ``export``
and ``checkpoint`` see plain StableHLO.

``0 * NaN`` stays NaN: a NaN row stays NaN.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

Array = Any

zero_safe_multiply_p = Primitive("xent_zero_safe_multiply")


def zero_safe_multiply(a: Array, b: Array) -> Array:
    """``a * b`` elementwise (same shape and dtype), with ``0 * ±inf = ±inf * 0 = 0``.

    >>> import jax.numpy as jnp
    >>> zero_safe_multiply(jnp.array([0.0, 2.0, jnp.nan]), jnp.array([jnp.inf, 3.0, 0.0]))
    Array([ 0.,  6., nan], dtype=float32)
    """
    return zero_safe_multiply_p.bind(a, b)


def _product(a: Array, b: Array) -> Array:
    product = a * b
    zero_times_inf = ((a == 0) & jnp.isinf(b)) | ((b == 0) & jnp.isinf(a))
    return jnp.where(zero_times_inf, jnp.zeros_like(product), product)


def _abstract(a: Any, b: Any) -> Any:
    if a.shape != b.shape or a.dtype != b.dtype:
        raise TypeError(f"zero_safe_multiply: operands differ: {a.str_short()} and "
                        f"{b.str_short()}")
    return a.update(weak_type=a.weak_type and b.weak_type)


zero_safe_multiply_p.def_impl(jax.jit(_product))
zero_safe_multiply_p.def_abstract_eval(_abstract)
mlir.register_lowering(zero_safe_multiply_p, mlir.lower_fun(_product, multiple_results=False))
# bilinear like lax.mul: d(a*b) = da*b + a*db, and each side transposes to the other side
ad.defbilinear(zero_safe_multiply_p,
               lambda cotangent, a, b: zero_safe_multiply(cotangent, b),
               lambda cotangent, a, b: zero_safe_multiply(a, cotangent))
batching.primitive_batchers[zero_safe_multiply_p] = lambda args, dims: _batched(args, dims)


def _batched(args: tuple[Array, Array], dims: tuple[int | None, int | None]) -> Any:
    """The vmap rule: batch axes to the front, an unbatched operand broadcast to the batch
    (the primitive takes operands of one shape: no implicit broadcasting)."""
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    a, b = (jnp.broadcast_to(x, (size, *x.shape)) if d is None else jnp.moveaxis(x, d, 0)
            for x, d in zip(args, dims))
    return zero_safe_multiply(a, b), 0
