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
