"""The array operations loss options are composed from (``xent._options``), in JAX.

The composition of the options runs inside one ``jax.jit`` (one dispatch when called
eagerly; inlined in the caller's ``jit``), with the options' static parts as static
arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp

from xent import _options
from xent.backends._jax_ops import _logsumexp, _up, dressed_cross_entropy, in_range
from xent.backends._jax_partitioning import by_partitioning

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
        if getattr(self, "class_shards", 1) == 1 and (
                opt.smooths or opt.class_weights is not None or opt.where is not None):
            return _dense_dressed_jit(labels, logits, arrays, axis=axis, static=static)
        return _dense_jit(labels, logits, arrays, axis=axis, static=static, ops=self)

    #: ``_options.sparse_rows`` gives its one-hot labels (smoothing or ``where`` on sparse
    #: labels) to this, in its jit: the dense kernel with the options inside (3.3-11x the
    #: call without options through the composition, 1.8-3.1x so)
    fused_dense_rows = softmax_cross_entropy_with_options

    def sparse_softmax_cross_entropy_with_options(self, labels: Array, logits: Array,
                                                  axis: int, opt: _options.Options) -> Array:
        arrays, static = _split(opt)
        if getattr(self, "class_shards", 1) == 1:
            if opt.where is not None and not opt.smooths:
                return _sparse_where_jit(labels, logits, arrays, axis=axis, static=static,
                                         ops=self)
            if opt.where is None and not (opt.smooths and opt.class_weights is not None) and (
                    opt.ignore_index is not None or opt.smooths):
                return _sparse_rowwise_jit(labels, logits, arrays, axis=axis,
                                           static=static, ops=self)
        return _sparse_jit(labels, logits, arrays, axis=axis, static=static, ops=self)


#: The array operations, for the options' arithmetic inside ``_jax_ops``' kernels.
OPS = JaxArrayOps()
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


@partial(jax.jit, static_argnames=("axis", "static"))
def _dense_dressed_jit(labels: Array, logits: Array, arrays: dict[str, Array], *, axis: int,
                       static: _options.Options) -> Array:
    """``_options.dense_rows`` with label smoothing, class weights or ``where``: the labels
    ``where(m, (1 - e) y + e / C, 0) w`` and the logits ``where(m, x, -inf)`` are formed
    inside the dense kernel's fused loops (``_jax_ops.dressed_cross_entropy``). Composed,
    they are arrays of the logits' size, which XLA materialises for the kernel's
    ``lax.cond``, and the excluded classes' ``0 * inf`` sends every masked batch through
    its exact recomputation: 1.3-2.3x (smoothing, class weights) and 2.8-8x (``where``)
    the call without options (``benchmarks/options.py``)."""
    opt = _join(arrays, static)
    e = opt.label_smoothing
    keep, spread = (1 - e, e / logits.shape[axis]) if opt.smooths else (None, None)
    loss = dressed_cross_entropy(labels, logits, keep, spread, opt.where, opt.class_weights,
                                 axis)
    return loss if opt.weights is None else loss * opt.weights


@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _sparse_jit(labels: Array, logits: Array, arrays: dict[str, Array], *, axis: int,
                static: _options.Options, ops: Any) -> Array:
    return _options.sparse_rows(ops, labels, logits, axis, _join(arrays, static))


@cache
def _kept_loss(axis: int, ops: Any) -> Callable[[Array, Array, Array], Array]:
    """``(labels, x, mask) -> lse(x~) - x~[labels]``, ``x~`` the logits with ``-inf`` where
    ``mask`` is False: the backend's sparse kernel on ``x~`` (NaN for a label out of range).

    XLA:CPU writes ``x~`` out in full before that kernel's two reductions read it (1.2-1.6x
    the call without ``where``). One pass instead, from the maximum ``m`` over *all*
    classes: ``lse(x~) = m + r``, ``r = log(s)``, ``s = sum_c mask_c exp(x_c - m)``, with
    the mask as 0/1 floats (fused with the reductions: 0.6-1.1x). Its value is the formula
    wherever it is finite, except where the maximum is excluded (``r < 0``) and the kept
    classes' terms cancel (``loss < -r``: an error of ``eps |r|`` is then more than half of
    ``eps * loss``) or underflow (``s`` near the smallest normal number), as in
    ``_numpy_fused``; a batch with such a row, or a non-finite maximum (a NaN or infinite
    logit, kept or not), takes the kernel on ``x~`` under ``lax.cond``. Its derivatives are
    JAX's of these formulas (``m`` is a constant): ``mask * softmax(x~) - onehot``, 0 at an
    excluded class. A ``custom_vmap`` rule keeps the cond's predicate one scalar under
    ``vmap`` (a batched one would run both branches); derivatives (a ``custom_jvp`` rule)
    are the kernel's on ``x~``, value and tangent: differentiated calls run it as before, and
    so do partitioned programs (``by_partitioning``: the kernel's sharded steps)."""

    def exact(labels: Array, x: Array, mask: Array) -> Array:
        return ops.sparse_softmax_cross_entropy_with_logits(
            labels, jnp.where(mask, x, jnp.asarray(-jnp.inf, x.dtype)), axis)

    def one_device(labels: Array, x: Array, mask: Array) -> Array:
        xf = _up(x)
        classes = xf.shape[axis]
        if jax.export.is_symbolic_dim(classes):
            return exact(labels, x, mask)
        valid = in_range(labels, classes)
        index = jnp.expand_dims(jnp.where(valid, labels, 0), axis)
        m = xf.max(axis, keepdims=True)
        s = (jnp.exp(xf - m) * mask.astype(xf.dtype)).sum(axis)
        r = jnp.log(s)
        picked = jnp.where(  # -inf at an excluded label: the loss is +inf there
            jnp.take_along_axis(mask, index, axis=axis),
            jnp.take_along_axis(xf, index, axis=axis), -jnp.inf).squeeze(axis)
        loss = m.squeeze(axis) + r - picked
        info = jnp.finfo(xf.dtype)
        suspect = ~jnp.isfinite(m).squeeze(axis) | ((r < 0) & (
            (loss < -r) | (s < classes * float(info.tiny) / float(info.eps))))
        fast = (loss * jnp.where(valid, 1, jnp.nan).astype(xf.dtype)).astype(x.dtype)
        return jax.lax.cond(suspect.any(), exact, lambda *_: fast, labels, x, mask)

    @jax.custom_batching.custom_vmap
    def value(labels: Array, x: Array, mask: Array) -> Array:
        return by_partitioning(one_device, exact, labels, x, mask)  # sharded: the kernel's

    @value.def_vmap
    def batched(size: int, in_batched: list[bool], labels: Array, x: Array,
                mask: Array) -> Any:
        labels, x, mask = (a if b else jnp.broadcast_to(a, (size, *a.shape))
                           for a, b in zip((labels, x, mask), in_batched))
        return _kept_loss(axis + 1, ops)(labels, x, mask), True

    @jax.custom_jvp
    def kept_loss(labels: Array, x: Array, mask: Array) -> Array:
        return value(labels, x, mask)

    @kept_loss.defjvp
    def kept_loss_jvp(primals: tuple[Array, Array, Array],
                      tangents: tuple[Any, Any, Any]) -> Any:
        labels, x, mask = primals
        return jax.jvp(lambda x: exact(labels, x, mask), (x,), (tangents[1],))

    return kept_loss


@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _sparse_where_jit(labels: Array, logits: Array, arrays: dict[str, Array], *, axis: int,
                      static: _options.Options, ops: Any) -> Array:
    """``_options.sparse_rows`` with ``where`` and no smoothing, without one-hot labels.

    The composition makes the labels one-hot and runs the dense kernel, whose ``0 * inf``
    at every excluded class sends each masked batch through its exact recomputation:
    3.7-7.5x the call without options (1.35-1.45x here, ``benchmarks/options.py``). Its
    value is ``w_t (lse(x~) - x_t)`` where the label's class is kept and 0 where it is
    excluded (no label left in the row), NaN in a NaN row either way: here that is
    :func:`_kept_loss` (``+inf`` at an excluded label, NaN in a NaN row), kept where the
    label's class is, or where it is NaN. ``ignore_index`` as in the composition (the
    ignored rows read logits 0, then loss 0)."""
    opt = _join(arrays, static)
    x, ignored = logits, None
    if opt.ignore_index is not None:
        ignored = jnp.equal(labels, opt.ignore_index)
        labels = jnp.where(ignored, 0, labels)
        x = jnp.where(jnp.expand_dims(ignored, axis), jnp.zeros([], x.dtype), x)
    assert opt.where is not None
    mask = jnp.broadcast_to(opt.where, x.shape)
    loss = _kept_loss(axis, ops)(labels, x, mask)
    index = jnp.where(in_range(labels, x.shape[axis]), labels, 0)
    kept = jnp.take_along_axis(mask, jnp.expand_dims(index, axis), axis=axis).squeeze(axis)
    loss = jnp.where(kept | jnp.isnan(loss), loss, jnp.zeros([], loss.dtype))
    if opt.class_weights is not None:
        loss = loss * jnp.take(opt.class_weights, index, mode="clip")
    if ignored is not None:
        loss = jnp.where(ignored, jnp.zeros([], loss.dtype), loss)
    return loss if opt.weights is None else loss * opt.weights


@partial(jax.jit, static_argnames=("axis", "static", "ops"))
def _sparse_rowwise_jit(labels: Array, logits: Array, arrays: dict[str, Array], *,
                        axis: int, static: _options.Options, ops: Any) -> Array:
    """``_options.sparse_rows`` without ``where``, with ``ignore_index`` or label smoothing
    (then without class weights), and no array the size of the logits but theirs.

    The composition reads an ignored row's logits as 0 (a select over the logits: 1.3-1.6x
    the call without options, ``benchmarks/options.py``) so that its gradient is exactly 0
    also where they are NaN, and smooths one-hot labels through the dense kernel (2-4x).
    Here the row's loss comes from the logits as they are: the sparse kernel, or with
    smoothing :func:`_smoothed`; :func:`_ignoring` zeroes an ignored row's loss, and its
    tangent on the way in and out, so the transposed select zeroes its cotangent whatever
    the kernel gives it."""
    opt = _join(arrays, static)
    e = jnp.asarray(opt.label_smoothing if opt.smooths else 0.0, _compute(logits.dtype))
    kernel = partial(_smoothed if opt.smooths else _plain, ops=ops, axis=axis)
    if opt.ignore_index is None:
        loss, index = kernel(labels, logits, e), labels
    else:
        ignored = jnp.equal(labels, opt.ignore_index)
        index = jnp.where(ignored, 0, labels)
        loss = _ignoring(kernel, axis, index, logits, ignored, e)
    if opt.class_weights is not None:  # (0 for an ignored row, also at a weight of inf)
        picked = jnp.take(opt.class_weights, index, mode="clip")
        if opt.ignore_index is not None:
            picked = jnp.where(ignored, jnp.zeros([], picked.dtype), picked)
        loss = loss * picked
    return loss if opt.weights is None else loss * opt.weights


def _plain(index: Array, logits: Array, e: Array, *, ops: Any, axis: int) -> Array:
    """The backend's sparse kernel (``e`` unused)."""
    return ops.sparse_softmax_cross_entropy_with_logits(index, logits, axis)


def _smoothed(index: Array, logits: Array, e: Array, *, ops: Any, axis: int) -> Array:
    """The loss of one-hot labels smoothed by ``e`` (``y = (1 - e) onehot + e / C``):
    ``sum_c y_c (lse - x_c) = (1 - e) (lse - x_t) + e (lse - mean_c x_c)``, the first term
    by the backend's sparse kernel (which also takes the label where the class axis is
    partitioned). The label's own share is 0 at ``e == 1`` (also at a ``-inf`` logit, whose
    loss is then ``+inf`` through the mean, as in the composition); NaN for a label out of
    range, or a NaN, ``+inf`` or all ``-inf`` row."""
    x = _up(logits)
    own = ops.sparse_softmax_cross_entropy_with_logits(index, x, axis)
    own = jnp.where(e == 1, jnp.zeros([], x.dtype), (1 - e) * own)
    loss = own + e * (_logsumexp(x, axis).squeeze(axis) - x.mean(axis))
    valid = in_range(index, x.shape[axis])
    return jnp.where(valid, loss, jnp.asarray(jnp.nan, x.dtype)).astype(logits.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _ignoring(kernel: Any, axis: int, index: Array, logits: Array, ignored: Array,
              e: Array) -> Array:
    """``kernel(index, logits, e)``, 0 where ``ignored`` (whatever the row's logits)."""
    loss = kernel(index, logits, e)
    return jnp.where(ignored, jnp.zeros([], loss.dtype), loss)


@_ignoring.defjvp
def _ignoring_jvp(kernel: Any, axis: int, primals: tuple[Array, Array, Array, Array],
                  tangents: tuple[Any, Any, Any, Any]) -> tuple[Array, Array]:
    """The kernel's own derivative, with an ignored row's tangent zeroed on the way in and
    out: linear in ``dlogits``, so JAX transposes it, and the transposed input select gives
    an ignored row exactly 0 (its logits may be NaN)."""
    index, logits, ignored, e = primals
    dlogits, de = tangents[1], tangents[3]
    dlogits = jnp.where(jnp.expand_dims(ignored, axis), jnp.zeros([], dlogits.dtype), dlogits)
    loss, dloss = jax.jvp(lambda x, e: kernel(index, x, e), (logits, e), (dlogits, de))
    zero = jnp.zeros([], loss.dtype)
    return jnp.where(ignored, zero, loss), jnp.where(ignored, zero, dloss)
