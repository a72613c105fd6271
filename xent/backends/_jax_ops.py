"""The JAX backend's math: ``jax.nn`` kernels plus the masked-class fix, native to every
JAX transform (``jit``, ``grad``, ``vmap``, ``jvp``, ``jacfwd``/``jacrev``, ``hessian``,
``checkpoint``, ``lax.scan``, ``jax.export`` with symbolic shapes).

Each entry point is one jitted function (one dispatch when called eagerly, inlined in the
user's ``jit``). float16 and bfloat16 are computed in float32 inside.

Dense cross-entropy, ``sum_c labels_c * (lse - logits_c)``: at a masked class (label 0,
logit ``-inf``) the term is ``0 * inf = NaN``. The plain formula runs first (XLA fuses it
into one loop, as fast as optax's); only when its result has a NaN does a ``lax.cond``
recompute with ``where(labels == 0, 0, ...)``. A ``custom_vmap`` rule keeps that predicate
a scalar under ``vmap``. Derivatives come from a ``custom_jvp`` rule, linear in the
tangents: ``dloss = sum_c (softmax_c * sum(labels) - labels_c) dlogits_c
+ sum_c (lse - logits_c) dlabels_c``. JAX transposes it for reverse mode, so one rule
serves ``jvp``, ``grad``, ``jacfwd``, ``jacrev`` and ``hessian``. The label term is a
:func:`zero_safe_multiply`: ``+inf`` at a masked class where the label moves, 0 where it
does not (``jacfwd`` in the labels, and ``jacrev`` rows of other examples, stay finite).

Shape polymorphism (``jax.export`` with symbolic dimensions): no Python branch reads a
symbolic size; where the size is symbolic the ``lax.cond`` path runs, which fits any size.

Accuracy is that of ``jax.nn`` and optax: a few eps of ``|lse|`` absolute. A confident row
whose loss is below that (``log1p`` territory) rounds, to 0 in float32; the NumPy
reference is relative-accurate there, at a cost XLA:CPU does not fuse away (1.4-6x).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from xent import _options
from xent.backends import _jax_sharded
from xent.backends._jax_partitioning import by_partitioning
from xent.backends._jax_zero_safe import zero_safe_multiply

Array = Any
_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
_INT32_MAX = int(np.iinfo(np.int32).max)
SMALL = 1 << 14  # logits elements up to which the masked-class fix runs unconditionally


def _up(x: Array) -> Array:
    """float16 / bfloat16 in float32, the dtype the math runs in; other dtypes unchanged."""
    return x.astype(jnp.float32) if x.dtype in _HALF else x


def _is_small(x: Array) -> bool:
    """At most :data:`SMALL` elements; False for a symbolic size (``jax.export``), which
    a Python ``if`` cannot compare."""
    size = x.size
    return not jax.export.is_symbolic_dim(size) and size <= SMALL


def _logsumexp(x: Array, axis: int) -> Array:
    """``max + log(sum(exp(x - max)))``, keepdims: NaN for a row with a NaN or ``+inf`` logit
    or with every logit ``-inf``. (``jax.nn.logsumexp`` selects on a non-finite max, which
    XLA:CPU does not fuse with the reductions: 1.5x slower, for rows that are NaN anyway.)"""
    m = jax.lax.stop_gradient(x.max(axis, keepdims=True))
    return m + jnp.log(jnp.exp(x - m).sum(axis, keepdims=True))


def _masked_loss(labels: Array, logits: Array, axis: int) -> Array:
    """The loss with the masked-class fix: a zero label's term is exactly 0.

    NaN for a row whose logsumexp is NaN, also where every label of the row is 0."""
    lse = _logsumexp(logits, axis)
    loss = jnp.where(labels == 0, 0, labels * (lse - logits)).sum(axis)
    return jnp.where(jnp.isnan(lse.squeeze(axis)), jnp.nan, loss)


#: Which options a dense kernel applies: (label smoothing, a ``where`` mask, class weights).
Parts = tuple[bool, bool, bool]
_UNDRESSED: Parts = (False, False, False)


def _unpacked(dress: tuple[Array, ...], parts: Parts) -> tuple[Any, Any, Any, Any]:
    """``(keep, spread, mask, w)`` from the arrays of the ``parts`` applied, in that order
    (None for a part not applied): ``keep = 1 - e`` and ``spread = e / C`` for label
    smoothing ``e``, the ``where`` mask, the class weights."""
    it = iter(dress)
    smooths, masks, weighs = parts
    keep, spread = (next(it), next(it)) if smooths else (None, None)
    return keep, spread, next(it) if masks else None, next(it) if weighs else None


def _dressed(labels: Array, dress: tuple[Array, ...], axis: int, parts: Parts) -> Array:
    """The labels the loss weighs the classes by (``xent._options.dressed_labels``), inside
    the kernel's fused loops (``labels`` for ``dress = ()``)."""
    if not dress:
        return labels
    from xent.backends._jax_options import OPS  # (it imports this module)

    keep, spread, mask, w = _unpacked(dress, parts)
    return _options.dressed_labels(OPS, labels, labels, axis % labels.ndim, keep, spread,
                                   mask, w)


def _kept(logits: Array, dress: tuple[Array, ...], parts: Parts) -> Array:
    """``logits`` with ``-inf`` at the classes a ``where`` mask excludes
    (``xent._options.kept_logits``)."""
    if not dress or not parts[1]:
        return logits
    from xent.backends._jax_options import OPS

    return _options.kept_logits(OPS, logits, _unpacked(dress, parts)[2])


@cache
def _dense_value(axis: int, parts: Parts = _UNDRESSED) -> Callable[..., Array]:
    """The loss along ``axis``: the plain formula, and :func:`_masked_loss` only when the
    batch has a NaN (``0 * inf`` at a masked class, or a NaN row).

    XLA:CPU fuses the plain formula into one loop; a compare/select splits it (2x slower
    forward), so the fix runs under ``lax.cond``. Under ``vmap`` a batched predicate would
    turn the cond into a select of both branches: the vmap rule instead runs the same
    function on the batched arrays (one more leading axis), keeping one scalar predicate.
    ``parts``: the options :func:`_dressed` and :func:`_kept` apply inside (the cond's
    operands are the arrays as given, which XLA does not copy). With a ``where`` mask the
    exact formula runs alone: its selects cost XLA:CPU 1.2-1.8x the plain formula, and a
    plain pass would meet ``0 * inf`` at every excluded class (formulations with the mask
    in the plain pass measured 1.2-6.5x, by XLA's fusion choices)."""

    @jax.custom_batching.custom_vmap
    def value(labels: Array, logits: Array, *dress: Array) -> Array:
        def masked(labels: Array, logits: Array, *dress: Array) -> Array:
            return _masked_loss(_dressed(labels, dress, axis, parts),
                                _kept(logits, dress, parts), axis)

        if _is_small(logits) or parts[1]:  # small: the cond costs more kernels than the
            return masked(labels, logits, *dress)  # select; a mask: selects anyway
        y = _dressed(labels, dress, axis, parts)
        loss = (y * (_logsumexp(logits, axis) - logits)).sum(axis)
        return jax.lax.cond(jnp.isnan(loss).any(), masked, lambda *_: loss,
                            labels, logits, *dress)

    @value.def_vmap
    def batched(size: int, in_batched: list[bool], labels: Array, logits: Array,
                *dress: Array) -> Any:
        if dress:  # the batch's own labels and logits, then the plain kernel
            labels, logits = jax.vmap(
                lambda y, x, *d: (_dressed(y, d, axis, parts), _kept(x, d, parts)),
                in_axes=[0 if b else None for b in in_batched], axis_size=size)(
                    labels, logits, *dress)
            in_batched = [True, True]
        labels, logits = (x if b else jnp.broadcast_to(x, (size, *x.shape))
                          for x, b in zip((labels, logits), in_batched))
        return _dense_value(axis + 1)(labels, logits), True

    return value


@partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _dense(labels: Array, logits: Array, dress: tuple[Array, ...], axis: int,
           parts: Parts = _UNDRESSED) -> Array:
    """``sum_c y_c * (logsumexp(x) - x_c)``, 0 where ``y_c == 0``, with ``y`` the labels
    :func:`_dressed` and ``x`` the logits :func:`_kept` by ``dress`` (``parts``)."""
    return _dense_value(axis, parts)(labels, logits, *dress)


def _tangent_zeros(primal: Array) -> Array:
    """A zero tangent of ``primal`` (``float0`` for a boolean mask)."""
    if jnp.issubdtype(primal.dtype, jnp.floating):
        return jnp.zeros(primal.shape, primal.dtype)
    return np.zeros(primal.shape, jax.dtypes.float0)


@partial(_dense.defjvp, symbolic_zeros=True)
def _dense_jvp(axis: int, parts: Parts, primals: tuple[Array, Array, Any],
               tangents: tuple[Any, Any, Any]) -> Any:
    """``dloss = sum_c (softmax_c * sum(y) - y_c) dlogits_c
    + sum_c (logsumexp - x_c) dy_c``, ``dy`` the tangent of the dressed labels, 0 at the
    classes a ``where`` mask excludes; transposed by JAX for reverse mode."""
    labels, logits, dress = primals
    dlabels, dlogits, ddress = tangents
    loss = _dense(labels, logits, dress, axis, parts)  # the rule calls _dense: higher orders
    dloss = jnp.zeros_like(loss)
    y, x = _dressed(labels, dress, axis, parts), _kept(logits, dress, parts)
    if not isinstance(dlogits, SymbolicZero):
        # finite at a masked class: softmax_c = exp(-inf) = 0 and labels_c = 0. Small: share
        # the loss's lse (fewer kernels); large: XLA:CPU fuses jax.nn.softmax's own max and
        # sum better than a shared lse, which it materialises broadcast to [..., C]
        softmax = (jnp.exp(x - _logsumexp(x, axis)) if _is_small(x)
                   else jax.nn.softmax(x, axis))
        weight = softmax * y.sum(axis, keepdims=True) - y
        mask = _unpacked(dress, parts)[2] if dress else None
        if mask is not None:  # an excluded class is never read: its tangent is not either
            dlogits = jnp.where(mask, dlogits, jnp.zeros([], dlogits.dtype))
        dloss = dloss + (weight * dlogits).sum(axis)
    moving = [not isinstance(t, SymbolicZero) for t in (dlabels, *ddress)]
    if any(moving):
        dy = dlabels
        if dress:  # the dressing is linear in each of its float inputs: its tangent
            zeros = [t if m else _tangent_zeros(p) for t, m, p in
                     zip((dlabels, *ddress), moving, (labels, *dress))]
            dy = jax.jvp(lambda y, *d: _dressed(y, d, axis, parts), (labels, *dress),
                         tuple(zeros))[1]
        # +inf at a masked class (the TF2 value) where dy_c != 0; 0 where it is 0
        weight = _logsumexp(x, axis) - x
        dloss = dloss + zero_safe_multiply(weight, dy).sum(axis)
    return loss, dloss


@partial(jax.jit, static_argnums=2)
def cross_entropy(labels: Array, logits: Array, axis: int) -> Array:
    """The dense loss in the dtype of ``logits`` (labels already cast to it): this module's
    kernels on one device, the vocab-parallel steps where XLA partitions the program."""
    loss = by_partitioning(lambda y, x: _dense(y, x, (), axis),
                           lambda y, x: _jax_sharded.dense_loss(y, x, axis, None),
                           _up(labels), _up(logits))
    return loss.astype(logits.dtype)


def dressed_cross_entropy(labels: Array, logits: Array, keep: Any, spread: Any,
                          where: Array | None, class_weights: Array | None,
                          axis: int) -> Array:
    """:func:`cross_entropy` of the labels ``where(where, labels * keep + spread, 0) *
    class_weights`` and the logits ``where(where, logits, -inf)``, as
    ``xent._options.dense_rows`` composes label smoothing, a ``where`` mask and class
    weights (None: not applied; ``keep`` None: no smoothing), computed in the kernel's
    loops rather than as arrays of their own (which XLA materialises for the kernel's
    ``lax.cond``). Call inside ``jit``."""
    x = _up(logits)
    parts = (keep is not None, where is not None, class_weights is not None)
    dress = [jnp.asarray(keep, x.dtype), jnp.asarray(spread, x.dtype)] if keep is not None else []
    dress += [where] if where is not None else []
    dress += [] if class_weights is None else [class_weights.astype(x.dtype)]

    def partitioned(y: Array, x: Array, *d: Array) -> Array:
        y, x = _dressed(y, d, axis, parts), _kept(x, d, parts)
        return _jax_sharded.dense_loss(y, x, axis, None)

    loss = by_partitioning(lambda y, x, *d: _dense(y, x, d, axis, parts), partitioned,
                           _up(labels), x, *dress)
    return loss.astype(logits.dtype)


@partial(jax.jit, static_argnums=2)
def sparse_cross_entropy(labels: Array, logits: Array, axis: int) -> Array:
    """``logsumexp(logits) - logits[labels]``; NaN (value and gradient) for a label outside
    ``[0, C)`` and for a row whose logsumexp is not finite."""
    x = _up(logits)
    valid = in_range(labels, x.shape[axis])
    # range checked on the labels as given: take_along_axis wraps negative indices, clamps,
    # and casts int64 indices to int32 before its own bounds check (2**32 becomes class 0)
    index = jnp.where(valid, labels, 0).astype(jnp.int32)
    loss = by_partitioning(lambda i, x: _sparse(i, x, axis),
                           lambda i, x: _jax_sharded.sparse_loss(i, x, axis, None), index, x)
    return (loss * jnp.where(valid, 1, jnp.nan).astype(x.dtype)).astype(logits.dtype)


def _sparse(index: Array, x: Array, axis: int) -> Array:
    """``logsumexp(x) - x[index]`` for indices in range; NaN for a NaN, +inf or all -inf row."""
    lse = _logsumexp(x, axis).squeeze(axis)
    index = jnp.expand_dims(index, axis)
    return lse - jnp.take_along_axis(x, index, axis=axis, mode="promise_in_bounds").squeeze(axis)


def in_range(labels: Array, num_classes: Any) -> Array:
    """``0 <= labels < num_classes``, without a comparison constant the dtype cannot hold.

    A symbolic ``num_classes`` (``jax.export``) has no Python comparison with the dtype's
    maximum: it is compared in the program, as ``labels <= min(num_classes - 1, max)``."""
    info = jnp.iinfo(labels.dtype)
    valid = labels >= 0 if info.min < 0 else jnp.ones(labels.shape, bool)
    if jax.export.is_symbolic_dim(num_classes):  # an int32 value in the program
        last = jax.core.min_dim(num_classes - 1, min(int(info.max), _INT32_MAX))
        return valid & (labels <= jnp.asarray(last).astype(labels.dtype))
    return valid & (labels < num_classes) if num_classes <= info.max else valid


@partial(jax.jit, static_argnums=1)
def softmax(logits: Array, axis: int) -> Array:
    return jax.nn.softmax(_up(logits), axis=axis).astype(logits.dtype)


@partial(jax.jit, static_argnums=1)
def log_softmax(logits: Array, axis: int) -> Array:
    return jax.nn.log_softmax(_up(logits), axis=axis).astype(logits.dtype)


@partial(jax.jit, static_argnums=1)
def reduce(loss: Array, reduction: str) -> Array:
    """``"sum"`` or ``"mean"``; float16 sums accumulate in float32."""
    x = _up(loss)
    return (x.sum() if reduction == "sum" else x.mean()).astype(loss.dtype)
