"""The JAX backend: ``jax.nn`` kernels plus the masked-class fix, under jit, grad and vmap.

Each math method is one jitted function (one dispatch when called eagerly, inlined in the
user's ``jit``). float16 and bfloat16 are computed in float32 inside. float64 needs
``jax_enable_x64``, as everywhere in JAX; the conformance hooks enable it for the call.

Dense cross-entropy, ``sum_c labels_c * (lse - logits_c)``: at a masked class (label 0,
logit ``-inf``) the term is ``0 * inf = NaN``. The plain formula runs first (XLA fuses it
into one loop, as fast as optax's); only when its result has a NaN does a ``lax.cond``
recompute with ``where(labels == 0, 0, ...)``. A ``custom_vmap`` rule keeps that predicate
a scalar under ``vmap``. Gradients come from a ``custom_jvp`` rule, linear in the
tangents (``softmax * sum(labels) - labels`` for logits, ``lse - logits`` for labels,
``+inf`` at a masked class), so ``grad`` (by transposition), ``jvp``, ``vmap``, ``jit``
and ``hessian`` all work.

Accuracy is that of ``jax.nn`` and optax: a few eps of ``|lse|`` absolute. A confident row
whose loss is below that (``log1p`` territory) rounds, to 0 in float32; the NumPy
reference is relative-accurate there, at a cost XLA:CPU does not fuse away (1.4-6x).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from xent.backends._base import Backend
from xent.backends._jax_options import JaxArrayOps

Array = Any
_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
_INT32 = np.iinfo(np.int32)
_DTYPES = ("float16", "bfloat16", "float32")
_NAMES: dict[Any, str] = {}  # dtype -> NumPy-style name
_SMALL = 1 << 14  # logits elements up to which the masked-class fix runs unconditionally


def _canonical(dtype: str | np.dtype) -> np.dtype:
    """The JAX dtype for a NumPy-style name: 64-bit types are 32-bit without x64."""
    return jax.dtypes.canonicalize_dtype(np.dtype(dtype))


def _up(x: Array) -> Array:
    """float16 / bfloat16 in float32, the dtype the math runs in; other dtypes unchanged."""
    return x.astype(jnp.float32) if x.dtype in _HALF else x


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


@cache
def _dense_value(axis: int) -> Callable[[Array, Array], Array]:
    """The loss along ``axis``: the plain formula, and :func:`_masked_loss` only when the
    batch has a NaN (``0 * inf`` at a masked class, or a NaN row).

    XLA:CPU fuses the plain formula into one loop; a compare/select splits it (2x slower
    forward), so the fix runs under ``lax.cond``. Under ``vmap`` a batched predicate would
    turn the cond into a select of both branches: the vmap rule instead runs the same
    function on the batched arrays (one more leading axis), keeping one scalar predicate."""

    @jax.custom_batching.custom_vmap
    def value(labels: Array, logits: Array) -> Array:
        if logits.size <= _SMALL:  # small: the cond costs more kernels than the select
            return _masked_loss(labels, logits, axis)
        loss = (labels * (_logsumexp(logits, axis) - logits)).sum(axis)
        return jax.lax.cond(jnp.isnan(loss).any(), partial(_masked_loss, axis=axis),
                            lambda labels, logits: loss, labels, logits)

    @value.def_vmap
    def batched(size: int, in_batched: list[bool], labels: Array, logits: Array) -> Any:
        labels, logits = (x if b else jnp.broadcast_to(x, (size, *x.shape))
                          for x, b in zip((labels, logits), in_batched))
        return _dense_value(axis + 1)(labels, logits), True

    return value


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _dense(labels: Array, logits: Array, axis: int) -> Array:
    """``sum_c labels_c * (logsumexp(logits) - logits_c)``, 0 where ``labels_c == 0``."""
    return _dense_value(axis)(labels, logits)


@partial(_dense.defjvp, symbolic_zeros=True)
def _dense_jvp(axis: int, primals: tuple[Array, Array], tangents: tuple[Any, Any]) -> Any:
    """``dloss = sum_c (softmax_c * sum(labels) - labels_c) dlogits_c
    + sum_c (logsumexp - logits_c) dlabels_c``; transposed by JAX for reverse mode."""
    labels, logits = primals
    dlabels, dlogits = tangents
    loss = _dense(labels, logits, axis)  # the rule calls _dense: higher orders use it too
    dloss = jnp.zeros_like(loss)
    if not isinstance(dlogits, SymbolicZero):
        # finite at a masked class: softmax_c = exp(-inf) = 0 and labels_c = 0. Small: share
        # the loss's lse (fewer kernels); large: XLA:CPU fuses jax.nn.softmax's own max and
        # sum better than a shared lse, which it materialises broadcast to [..., C]
        softmax = (jnp.exp(logits - _logsumexp(logits, axis)) if logits.size <= _SMALL
                   else jax.nn.softmax(logits, axis))
        weight = softmax * labels.sum(axis, keepdims=True) - labels
        dloss = dloss + (weight * dlogits).sum(axis)
    if not isinstance(dlabels, SymbolicZero):
        # +inf at a masked class (the TF2 value); a zero tangent there gives NaN (0 * inf)
        dloss = dloss + ((_logsumexp(logits, axis) - logits) * dlabels).sum(axis)
    return loss, dloss


@partial(jax.jit, static_argnums=2)
def _cross_entropy(labels: Array, logits: Array, axis: int) -> Array:
    return _dense(_up(labels), _up(logits), axis).astype(logits.dtype)


@partial(jax.jit, static_argnums=2)
def _sparse_cross_entropy(labels: Array, logits: Array, axis: int) -> Array:
    """``logsumexp(logits) - logits[labels]``; NaN (value and gradient) for a label outside
    ``[0, C)`` and for a row whose logsumexp is not finite."""
    x = _up(logits)
    lse = _logsumexp(x, axis).squeeze(axis)  # NaN for a NaN, +inf or all -inf row
    valid = _in_range(labels, x.shape[axis])
    # range checked on the labels as given: take_along_axis wraps negative indices, clamps,
    # and casts int64 indices to int32 before its own bounds check (2**32 becomes class 0)
    index = jnp.expand_dims(jnp.where(valid, labels, 0).astype(jnp.int32), axis)
    picked = jnp.take_along_axis(x, index, axis=axis, mode="promise_in_bounds").squeeze(axis)
    loss = (lse - picked) * jnp.where(valid, 1, jnp.nan).astype(x.dtype)  # NaN grad too
    return loss.astype(logits.dtype)


def _in_range(labels: Array, num_classes: int) -> Array:
    """``0 <= labels < num_classes``, without a comparison constant the dtype cannot hold."""
    info = jnp.iinfo(labels.dtype)
    valid = labels >= 0 if info.min < 0 else jnp.ones(labels.shape, bool)
    return valid & (labels < num_classes) if num_classes <= info.max else valid


@partial(jax.jit, static_argnums=1)
def _softmax(logits: Array, axis: int) -> Array:
    return jax.nn.softmax(_up(logits), axis=axis).astype(logits.dtype)


@partial(jax.jit, static_argnums=1)
def _log_softmax(logits: Array, axis: int) -> Array:
    return jax.nn.log_softmax(_up(logits), axis=axis).astype(logits.dtype)


@partial(jax.jit, static_argnums=1)
def _reduce(loss: Array, reduction: str) -> Array:
    x = _up(loss)  # float16 sums accumulate in float32
    return (x.sum() if reduction == "sum" else x.mean()).astype(loss.dtype)


def _x64_for(*arrays: np.ndarray) -> contextlib.AbstractContextManager[Any]:
    """``jax.enable_x64`` for a call with float64 input or integers beyond int32 (the
    conformance hooks only; user code decides x64 itself)."""
    if any(a.dtype == np.float64 or (a.dtype.kind in "iu" and a.size and not
           (_INT32.min <= a.min() and a.max() <= _INT32.max)) for a in map(np.asarray, arrays)):
        return jax.enable_x64(True)
    return contextlib.nullcontext()


class JaxBackend(JaxArrayOps, Backend):
    name = "jax"
    module = "jax"
    modes = ("eager", "jit")
    tracing_modes = ("jit",)
    has_autodiff = True

    #: float64 arrays exist only while ``jax_enable_x64`` is on (user code decides that);
    #: the conformance hooks take float64 input either way, enabling x64 for the call.
    dtypes = _DTYPES + ("float64",)

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, (jax.Array, jax.core.Tracer))  # tracers: inside jit/grad/vmap

    def dtype_name(self, x: Array) -> str:
        try:
            return _NAMES[x.dtype]
        except KeyError:  # numpy's dtype.name costs ~10us a call: cached (eager overhead)
            return _NAMES.setdefault(x.dtype, str(x.dtype.name))

    def asarray(self, value: Any, *, like: Array | None = None, dtype: str | None = None) -> Array:
        host = np.asarray(value)
        canonical = _canonical(dtype if dtype is not None else host.dtype)  # int64 -> int32
        if like is not None and canonical.kind in "iu" and canonical != host.dtype:
            _check_fits(host, canonical)
        if canonical != host.dtype:
            host = host.astype(canonical)  # never jnp's "dtype not available" warning
        device = _device_of(like)
        return jnp.asarray(host) if device is None else jax.device_put(host, device)

    def cast(self, x: Array, dtype: str) -> Array:
        return x if self.dtype_name(x) == dtype else x.astype(_canonical(dtype))

    def stop_gradient(self, x: Array) -> Array:
        return jax.lax.stop_gradient(x)

    def first_out_of_range(self, labels: Array, num_classes: int) -> int | None:
        """Checked for concrete arrays on CPU (a read of host memory, no transfer); tracers
        and accelerator arrays get NaN rows instead."""
        if isinstance(labels, jax.core.Tracer) or labels.size == 0:
            return None
        if any(d.platform != "cpu" for d in labels.devices()):
            return None
        host = np.asarray(labels)  # zero-copy view of a CPU buffer
        unsigned = host.view(f"u{host.itemsize}") if host.dtype.kind == "i" else host
        if unsigned.max() < num_classes:  # negative labels wrap to huge unsigned values
            return None
        flat = host.ravel()
        return int(flat[(flat < 0) | (flat >= num_classes)][0])

    def reduce(self, loss: Array, reduction: str) -> Array:
        return _reduce(loss, reduction)

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: Array, axis: int) -> Array:
        return _softmax(logits, axis)

    def log_softmax(self, logits: Array, axis: int) -> Array:
        return _log_softmax(logits, axis)

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array, axis: int) -> Array:
        return _cross_entropy(labels, logits, axis)

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: Array, logits: Array, axis: int
    ) -> Array:
        return _sparse_cross_entropy(labels, logits, axis)

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Array], *args: np.ndarray) -> np.ndarray:
        with _x64_for(*args):
            call = self._in_mode(mode, fn)
            return self.to_numpy(call(*[self.asarray(a, dtype=str(a.dtype)) for a in args]))

    def value_and_grad(
        self, mode: str, fn: Callable[[Array, Array], Array], labels: np.ndarray,
        logits: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Integer (and bool) labels get no gradient (None); a stop_gradient gives zeros."""
        differentiable = jnp.issubdtype(labels.dtype, jnp.floating)

        def value_and_grads(y: Array, x: Array) -> tuple[Array, Array | None, Array]:
            if not differentiable:
                value, pullback = jax.vjp(lambda x: fn(y, x), x)
                (dx,) = pullback(jnp.ones_like(value))
                return value, None, dx
            value, pullback = jax.vjp(fn, y, x)
            dy, dx = pullback(jnp.ones_like(value))
            return value, dy, dx

        with _x64_for(labels, logits):
            call = self._in_mode(mode, value_and_grads)
            y = self.asarray(labels, dtype=str(labels.dtype))
            value, dy, dx = call(y, self.asarray(logits, dtype=str(logits.dtype)))
            return (self.to_numpy(value), None if dy is None else self.to_numpy(dy),
                    self.to_numpy(dx))

    def _in_mode(self, mode: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if mode == "eager":
            return fn
        if mode == "jit":
            return jax.jit(fn)
        raise ValueError(f"{self.name}: unknown mode {mode!r}")


def _device_of(like: Array | None) -> Any:
    """The one device of a concrete ``like`` (None for tracers, sharded arrays or None)."""
    if like is None or isinstance(like, jax.core.Tracer):
        return None
    devices = like.devices()
    return next(iter(devices)) if len(devices) == 1 else None


def _check_fits(host: np.ndarray, dtype: np.dtype) -> None:
    """Integer labels that 32-bit JAX would silently wrap (2**32 -> 0, a valid class)."""
    if host.size == 0 or host.dtype.kind not in "iu":
        return
    info = np.iinfo(dtype)
    bad = (host < info.min) | (host > info.max)
    if bad.any():
        value = int(host.ravel()[bad.ravel().argmax()])
        raise ValueError(
            f"labels: sparse label {value} is out of range: it does not fit {dtype.name}, "
            "the widest integer JAX has without jax_enable_x64"
        )
