"""Vocab-parallel softmax cross-entropy: the class axis split over devices, never gathered.

Megatron-LM's shape: small static steps, the collectives between them at the call site.
``across`` names the mesh axis (or axes) of a ``jax.shard_map`` that splits the class axis:
each step reduces this device's classes and :func:`_max_across` / :func:`_sum_across`
combine the devices. ``across=None`` runs the same steps on whole arrays, in a program
XLA partitions (GSPMD): its partitioner inserts the same two all-reduces.

Per row, with ``m`` the global maximum (round 1: ``pmax``), each shard computes over its
classes (the statistics of :func:`dense_statistics`)

    r'  sum of exp(x_c - m) where x_c != m      the maximum's own exp(0) = 1 left out
    k   the number of x_c == m                   its ties: r = r' + (k - 1) once summed
    b   sum y_c (m - x_c)                        0 where y_c == 0, even at x_c = -inf
    n   sum y_c

then one ``psum`` of the four (round 2: one all-reduce of four operands), and
``loss = b + n log1p(r)``: a sum of non-negative terms (for non-negative labels),
relatively accurate like the NumPy reference.
The maximum's 1 is kept out of ``r`` exactly once however the classes are split: each shard
leaves out its classes equal to the global ``m``, and ``k - 1`` puts back all but one.

Derivatives are ``custom_jvp`` rules whose tangent is one ``psum`` of local sums; JAX
transposes it for reverse mode into no collective at all for the losses (a cotangent per
row, already on every shard), and one ``psum`` for ``log_softmax`` / ``softmax`` (the row
sum of the incoming gradient). The rules' own quantities are differentiable (the global
maximum has the JVP of ``max``), so higher orders work too.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from xent.backends._jax_partitioning import explicitly_sharded
from xent.backends._jax_zero_safe import zero_safe_multiply

Array = Any
Axis = Any  # a mesh axis name, a tuple of them, or None (whole arrays, GSPMD)
Stats = tuple[Array, Array, Array, Array]  # (r', k, b, n) per row, keepdims


# -- collectives: identity on whole arrays --------------------------------------------------
def _sum_across(x: Any, across: Axis) -> Any:
    """``psum`` of an array or a tuple of them (one all-reduce)."""
    return x if across is None else lax.psum(x, across)


def _max_across(x: Array, axis: int, across: Axis) -> Array:
    """The row maximum over every shard, keepdims."""
    if across is None:
        return x.max(axis, keepdims=True)
    return _pmax(x, axis, across)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _pmax(x: Array, axis: int, across: Axis) -> Array:
    return lax.pmax(x.max(axis, keepdims=True), across)


@_pmax.defjvp
def _pmax_jvp(axis: int, across: Axis, primals: Any, tangents: Any) -> Any:
    """``max``'s JVP (the mean tangent of the tied maxima), over every shard."""
    (x,), (dx,) = primals, tangents
    m = _pmax(x, axis, across)
    top = x == m
    picked = jnp.stack([jnp.where(top, dx, 0).sum(axis), top.sum(axis, dtype=x.dtype)])
    total, count = lax.psum(picked, across)
    return m, jnp.expand_dims(total / count, axis)


def shard_offset(x: Array, axis: int, across: Axis) -> Any:
    """The global index of this shard's first class (shards are equal and in order)."""
    return 0 if across is None else lax.axis_index(across) * x.shape[axis]


def num_classes(x: Array, axis: int, across: Axis) -> Any:
    """The global size of the class axis."""
    return x.shape[axis] * (1 if across is None else lax.axis_size(across))


# -- local statistics (no collectives) ------------------------------------------------------
def _lse_terms(x: Array, m: Array, axis: int) -> tuple[Array, Array]:
    """``(r', k)`` of this shard's classes, keepdims. NaN where ``m`` is not finite."""
    d = x - m
    top = d == 0
    return (jnp.where(top, 0, jnp.exp(d)).sum(axis, keepdims=True),
            top.sum(axis, keepdims=True, dtype=x.dtype))


def dense_statistics(y: Array, x: Array, m: Array, axis: int) -> Stats:
    """``(r', k, b, n)`` of this shard."""
    rest, ties = _lse_terms(x, m, axis)
    gap = zero_safe_multiply(y, jnp.broadcast_to(m, x.shape) - x)  # +inf where y > 0 at -inf
    return rest, ties, gap.sum(axis, keepdims=True), y.sum(axis, keepdims=True)


def _local_label(labels: Array, x: Array, axis: int, across: Axis) -> tuple[Array, Array]:
    """``(here, index)``: whether this shard holds each row's class, and its local index
    (0 where it does not), keepdims along ``axis``."""
    first, size = shard_offset(x, axis, across), x.shape[axis]
    here = (labels >= first) & (labels - first < size)
    index = jnp.where(here, labels - first, 0).astype(jnp.int32)
    return jnp.expand_dims(here, axis), jnp.expand_dims(index, axis)


def _pick(x: Array, index: Array, here: Array, axis: int, across: Axis) -> Array:
    """``x`` at the label's class where ``here``, else 0 (keepdims). Inside ``shard_map`` a
    local gather; on whole arrays a one-hot sum, which a partitioner splits like any
    reduction (a gather along a sharded axis does not type-check with explicit sharding)."""
    if across is not None:
        picked = jnp.take_along_axis(x, index, axis=axis, mode="promise_in_bounds")
        return jnp.where(here, picked, 0)
    sharding = jax.typeof(x).sharding if explicitly_sharded(x) else None  # select: x's
    classes = lax.broadcasted_iota(jnp.int32, x.shape, axis, out_sharding=sharding)
    return jnp.where((classes == index) & here, x, 0).sum(axis, keepdims=True)


def sparse_statistics(labels: Array, x: Array, m: Array, axis: int, across: Axis) -> Stats:
    """``(r', k, b, n)`` of this shard for integer labels (global class indices)."""
    rest, ties = _lse_terms(x, m, axis)
    here, index = _local_label(labels, x, axis, across)
    gap = jnp.where(here, m - _pick(x, index, here, axis, across), 0)  # +inf at a -inf logit
    return rest, ties, gap, here.astype(x.dtype)


def _finish(stats: Stats, m: Array) -> tuple[Array, Array]:
    """``(loss, lse)`` from the summed statistics, keepdims."""
    r, k, b, n = stats
    log1p = jnp.log1p(r + (k - 1))  # NaN where m is not finite (r' is)
    return b + n * log1p, m + log1p


# -- the four functions ---------------------------------------------------------------------
@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def dense_loss(y: Array, x: Array, axis: int, across: Axis) -> Array:
    """``sum_c y_c (logsumexp(x) - x_c)`` over every shard's classes (0 where y_c == 0)."""
    m = _max_across(x, axis, across)                                 # round 1
    stats = _sum_across(dense_statistics(y, x, m, axis), across)     # round 2
    return _finish(stats, m)[0].squeeze(axis)


@partial(dense_loss.defjvp, symbolic_zeros=True)
def _dense_jvp(axis: int, across: Axis, primals: Any, tangents: Any) -> Any:
    """``dloss = sum_c (softmax_c n - y_c) dx_c + (lse - x_c) dy_c``, one psum."""
    y, x = primals
    dy, dx = tangents
    m = _max_across(x, axis, across)
    stats = _sum_across(dense_statistics(y, x, m, axis), across)
    loss, lse = _finish(stats, m)
    local = jnp.zeros_like(x).sum(axis)  # zeros of the loss's shape, varying like x
    if not isinstance(dx, SymbolicZero):
        n = stats[3]
        local = local + ((jnp.exp(x - lse) * n - y) * dx).sum(axis)
    if not isinstance(dy, SymbolicZero):
        local = local + zero_safe_multiply(jnp.broadcast_to(lse, x.shape) - x, dy).sum(axis)
    return loss.squeeze(axis), _sum_across(local, across)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def sparse_loss(labels: Array, x: Array, axis: int, across: Axis) -> Array:
    """``logsumexp(x) - x[label]``; the caller makes rows with a label out of range NaN."""
    m = _max_across(x, axis, across)
    stats = _sum_across(sparse_statistics(labels, x, m, axis, across), across)
    return _finish(stats, m)[0].squeeze(axis)


@partial(sparse_loss.defjvp, symbolic_zeros=True)
def _sparse_jvp(axis: int, across: Axis, primals: Any, tangents: Any) -> Any:
    """``dloss = sum_c softmax_c dx_c - dx[label]``, one psum."""
    labels, x = primals
    _, dx = tangents
    m = _max_across(x, axis, across)
    stats = _sum_across(sparse_statistics(labels, x, m, axis, across), across)
    loss, lse = _finish(stats, m)
    if isinstance(dx, SymbolicZero):
        return loss.squeeze(axis), jnp.zeros_like(loss.squeeze(axis))
    here, index = _local_label(labels, x, axis, across)
    local = (jnp.exp(x - lse) * dx).sum(axis) - _pick(dx, index, here, axis, across).squeeze(axis)
    return loss.squeeze(axis), _sum_across(local, across)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def log_softmax(x: Array, axis: int, across: Axis) -> Array:
    """``(x - m) - log1p(r)``: relatively accurate where a probability is close to 1."""
    m = _max_across(x, axis, across)
    rest, ties = _sum_across(_lse_terms(x, m, axis), across)
    return (x - m) - jnp.log1p(rest + (ties - 1))


@log_softmax.defjvp
def _log_softmax_jvp(axis: int, across: Axis, primals: Any, tangents: Any) -> Any:
    (x,), (dx,) = primals, tangents
    out = log_softmax(x, axis, across)
    return out, dx - _sum_across((jnp.exp(out) * dx).sum(axis, keepdims=True), across)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def softmax(x: Array, axis: int, across: Axis) -> Array:
    """``exp(x - m) / (1 + r)``."""
    m = _max_across(x, axis, across)
    rest, ties = _sum_across(_lse_terms(x, m, axis), across)
    return jnp.exp(x - m) / (rest + ties)


@softmax.defjvp
def _softmax_jvp(axis: int, across: Axis, primals: Any, tangents: Any) -> Any:
    (x,), (dx,) = primals, tangents
    p = softmax(x, axis, across)
    return p, p * (dx - _sum_across((p * dx).sum(axis, keepdims=True), across))
