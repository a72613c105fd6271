"""The array operations loss options are composed from (``xent._options``), in JAX.

The composition of the options runs inside one ``jax.jit`` (one dispatch when called
eagerly; inlined in the caller's ``jit``), with the options' static parts as static
arguments."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from xent import _options
from xent.backends._jax_ops import in_range

Array = Any
_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def _compute(dtype: Any) -> Any:
    return jnp.float32 if jnp.dtype(dtype) in _HALF else dtype


class JaxArrayOps:
    """See ``xent.backends.Backend`` for what each operation means."""

    def where(self, condition: Array, x: Any, y: Any) -> Array:
        return jnp.where(condition, x, y)

    def equal(self, x: Array, value: int) -> Array:
        return jnp.equal(x, value)  # a value the dtype cannot hold compares unequal

    def not_equal(self, x: Array, value: int) -> Array:
        return jnp.not_equal(x, value)

    def expand_dims(self, x: Array, axis: int) -> Array:
        return jnp.expand_dims(x, axis)

    def in_range(self, index: Array, num_classes: Any) -> Array:
        return in_range(index, num_classes)

    def one_hot(self, index: Array, like: Array, axis: int) -> Array:
        return jax.nn.one_hot(index, like.shape[axis], dtype=like.dtype, axis=axis)

    def take(self, table: Array, index: Array) -> Array:
        return jnp.take(table, index, mode="clip")

    def along(self, vector: Array, axis: int, like: Array) -> Array:
        return vector.reshape([-1 if d == axis else 1 for d in range(like.ndim)])

    def row_dot(self, labels: Array, vector: Array, axis: int) -> Array:
        dtype = _compute(labels.dtype)
        dot = jnp.vecdot(jnp.moveaxis(labels, axis, -1).astype(dtype), vector.astype(dtype))
        return dot.astype(labels.dtype)

    def broadcast_like(self, x: Array, like: Array) -> Array:
        return jnp.broadcast_to(x, like.shape)

    def total(self, x: Array) -> Array:
        return jnp.sum(x, dtype=_compute(x.dtype))

    def count(self, mask: Array, like: Array) -> Array:
        return jnp.sum(mask, dtype=_compute(like.dtype))

    def divide(self, total: Array, denominator: Array, like: Array) -> Array:
        return (total / denominator).astype(like.dtype)

    # the options composed in one jitted function
    def softmax_cross_entropy_with_options(self, labels: Array, logits: Array, axis: int,
                                           opt: _options.Options) -> Array:
        arrays, static = _split(opt)
        return _dense_jit(labels, logits, arrays, axis=axis, static=static, ops=self)

    def sparse_softmax_cross_entropy_with_options(self, labels: Array, logits: Array,
                                                  axis: int, opt: _options.Options) -> Array:
        arrays, static = _split(opt)
        if not opt.smooths and getattr(self, "class_shards", 1) == 1:
            if opt.where is not None:
                return _sparse_where_jit(labels, logits, arrays, axis=axis, static=static,
                                         ops=self)
            if opt.ignore_index is not None:
                return _sparse_ignoring_jit(labels, logits, arrays, axis=axis,
                                            static=static, ops=self)
        return _sparse_jit(labels, logits, arrays, axis=axis, static=static, ops=self)


_ARRAYS = ("weights", "class_weights", "where")


def _split(opt: _options.Options) -> tuple[dict[str, Array], _options.Options]:
    """The options' arrays and the smoothing (traced: no recompilation per value) and the
    rest (static, hashable)."""
    arrays = {k: getattr(opt, k) for k in _ARRAYS if getattr(opt, k) is not None}
    if opt.smooths:
        arrays["label_smoothing"] = opt.label_smoothing
    return arrays, dataclasses.replace(opt, weights=None, class_weights=None, where=None,
                                       label_smoothing=0.0)


def _join(arrays: dict[str, Array], static: _options.Options) -> _options.Options:
    return dataclasses.replace(static, **arrays)


@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _dense_jit(labels: Array, logits: Array, arrays: dict[str, Array], *, axis: int,
               static: _options.Options, ops: Any) -> Array:
    return _options.dense_rows(ops, labels, logits, axis, _join(arrays, static))


@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _sparse_jit(labels: Array, logits: Array, arrays: dict[str, Array], *, axis: int,
                static: _options.Options, ops: Any) -> Array:
    return _options.sparse_rows(ops, labels, logits, axis, _join(arrays, static))


@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _sparse_where_jit(labels: Array, logits: Array, arrays: dict[str, Array], *, axis: int,
                      static: _options.Options, ops: Any) -> Array:
    """``_options.sparse_rows`` with ``where`` and no smoothing, without one-hot labels.

    The composition makes the labels one-hot and runs the dense kernel, whose ``0 * inf``
    at every excluded class sends each masked batch through its exact recomputation:
    3.7-7.5x the call without options (1.35-1.45x here, ``benchmarks/options.py``). Its
    value is ``w_t (lse(x~) - x_t)`` where the label's class is kept and 0 where it is
    excluded (no label left in the row), NaN in a NaN row either way: here that is the
    sparse kernel on ``x~`` (``+inf`` at an excluded label, NaN in a NaN row), kept where
    the label's class is, or where it is NaN. ``ignore_index`` as in the composition (the
    ignored rows read logits 0, then loss 0)."""
    opt = _join(arrays, static)
    x, ignored = logits, None
    if opt.ignore_index is not None:
        ignored = jnp.equal(labels, opt.ignore_index)
        labels = jnp.where(ignored, 0, labels)
        x = jnp.where(jnp.expand_dims(ignored, axis), jnp.zeros([], x.dtype), x)
    assert opt.where is not None
    mask = jnp.broadcast_to(opt.where, x.shape)
    loss = ops.sparse_softmax_cross_entropy_with_logits(
        labels, jnp.where(mask, x, jnp.asarray(-jnp.inf, x.dtype)), axis)
    index = jnp.where(in_range(labels, x.shape[axis]), labels, 0)
    kept = jnp.take_along_axis(mask, jnp.expand_dims(index, axis), axis=axis).squeeze(axis)
    loss = jnp.where(kept | jnp.isnan(loss), loss, jnp.zeros([], loss.dtype))
    if opt.class_weights is not None:
        loss = loss * jnp.take(opt.class_weights, index, mode="clip")
    if ignored is not None:
        loss = jnp.where(ignored, jnp.zeros([], loss.dtype), loss)
    return loss if opt.weights is None else loss * opt.weights



@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _sparse_ignoring_jit(labels: Array, logits: Array, arrays: dict[str, Array], *,
                         axis: int, static: _options.Options, ops: Any) -> Array:
    """``_options.sparse_rows`` with ``ignore_index`` (no ``where``, no smoothing), without
    its select over the logits.

    The composition reads an ignored row's logits as 0 so that its gradient is exactly 0
    also where they are NaN (``0 * NaN`` otherwise): a pass over the logits, 1.3-1.6x the
    call without options (``benchmarks/options.py``). Here the sparse kernel reads them as
    they are, and :func:`_ignoring` zeroes the row's loss, and its tangent before the kernel
    sees it: the transposed select zeroes the row's cotangent whatever the kernel gives it."""
    opt = _join(arrays, static)
    assert opt.ignore_index is not None
    ignored = jnp.equal(labels, opt.ignore_index)
    index = jnp.where(ignored, 0, labels)
    loss = _ignoring(ops, axis, index, logits, ignored)
    if opt.class_weights is not None:  # (0 for an ignored row, also at a weight of inf)
        picked = jnp.take(opt.class_weights, index, mode="clip")
        loss = loss * jnp.where(ignored, jnp.zeros([], picked.dtype), picked)
    return loss if opt.weights is None else loss * opt.weights


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _ignoring(ops: Any, axis: int, index: Array, logits: Array, ignored: Array) -> Array:
    """The sparse loss, 0 where ``ignored`` (whatever the row's logits)."""
    loss = ops.sparse_softmax_cross_entropy_with_logits(index, logits, axis)
    return jnp.where(ignored, jnp.zeros([], loss.dtype), loss)


@_ignoring.defjvp
def _ignoring_jvp(ops: Any, axis: int, primals: tuple[Array, Array, Array],
                  tangents: tuple[Any, Any, Any]) -> tuple[Array, Array]:
    """The kernel's own derivative, with an ignored row's tangent zeroed on the way in and
    out: linear in ``dlogits``, so JAX transposes it, and the transposed input select gives
    an ignored row exactly 0 (its logits may be NaN)."""
    index, logits, ignored = primals
    dlogits = tangents[1]
    dlogits = jnp.where(jnp.expand_dims(ignored, axis), jnp.zeros([], dlogits.dtype), dlogits)
    loss, dloss = jax.jvp(
        lambda x: ops.sparse_softmax_cross_entropy_with_logits(index, x, axis),
        (logits,), (dlogits,))
    zero = jnp.zeros([], loss.dtype)
    return jnp.where(ignored, zero, loss), jnp.where(ignored, zero, dloss)
