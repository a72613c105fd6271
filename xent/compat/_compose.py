"""Framework conventions composed from core results, shared by the twins.

Nothing here computes a softmax or a log-sum-exp: these are the masks, counts, divisions
and label arithmetic by which a twin turns the core's meaning (``xent._options``) into its
framework's. They work on the arrays of any backend, through the backend protocol
(``where``, ``count``, ``divide``, ...) and the comparison and indexing operators every
framework's tensors have (``<``, ``<=``, ``&``, ``~``, ``x[..., 0]``; never ``==``, which a
TF1 graph tensor answers with a Python bool).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xent import _api, _dispatch
from xent.backends import Backend

Array = Any


def backend_of(logits: Any, *others: Any) -> Backend:
    """The backend a call on ``logits`` (and ``others``) runs on, checking they agree."""
    owner = _dispatch.owner(logits)
    be = _dispatch.pick(owner, None, None)
    for other in others:
        if other is not None and (found := _dispatch.owner(other, "labels")) is not owner:
            _dispatch.pick(owner, found, None)  # raises for two frameworks
    return be


class Call:
    """A twin's logits and labels on their backend, converted once, with what is read of
    them once (static shapes and dtype names): the core takes these as known
    (:func:`xent._api.dense_known`) instead of reading them again, which on TF costs about
    half a microsecond a read. ``dtype``: cast the logits to it (Keras' compute dtype).
    A twin that changes the labels updates ``labels_shape`` / ``labels_dtype`` with them."""

    __slots__ = ("be", "logits", "labels", "shape", "dtype", "labels_shape", "labels_dtype")
    shape: tuple[int | None, ...]
    labels_shape: tuple[int | None, ...]

    def __init__(self, logits: Any, labels: Any, dtype: str | None = None) -> None:
        logits_owner = _dispatch.owner(logits)
        labels_owner = _dispatch.owner(labels, "labels")
        if labels_owner is logits_owner is not None:
            be = logits_owner
        else:
            be = _dispatch.pick(logits_owner, labels_owner, None)  # raises for two frameworks
        if logits_owner is not be:
            logits = native(be, logits)
        if labels_owner is not be:
            labels = native(be, labels, like=logits)
        shape, labels_shape = be.shape(logits), be.shape(labels)
        if shape is None or labels_shape is None:
            raise _unknown_rank()
        self.shape, self.labels_shape = shape, labels_shape
        self.dtype = be.dtype_name(logits)
        if dtype is not None and self.dtype != dtype:
            logits, self.dtype = be.cast(logits, dtype), dtype
        self.be, self.logits, self.labels = be, logits, labels
        self.labels_dtype = be.dtype_name(labels)

    def dense(self, logits: Array = None, **options: Any) -> Array:
        """The core's dense loss of ``self.labels`` and ``logits`` (default ``self.logits``;
        else an array of its shape and dtype) with ``options``."""
        x = self.logits if logits is None else logits
        known = self.shape, self.dtype, self.labels_shape, self.labels_dtype
        return _api.dense_known(self.be, self.labels, x, known, **options)

    def sparse(self, logits: Array = None, **options: Any) -> Array:
        """The core's sparse loss, as :meth:`dense`."""
        x = self.logits if logits is None else logits
        known = self.shape, self.dtype, self.labels_shape, self.labels_dtype
        return _api.sparse_known(self.be, self.labels, x, known, **options)


def native(be: Backend, x: Any, like: Any = None, dtype: str | None = None) -> Array:
    """``x`` as an array of ``be`` (framework-neutral input converted; a tensor as is)."""
    if _dispatch.owner(x, "argument") is be:
        return x if dtype is None or be.dtype_name(x) == dtype else be.cast(x, dtype)
    if like is not None and (adopted := be.adopt(x, like)) is not None:
        return adopted if dtype is None else be.cast(adopted, dtype)  # under torch.compile
    if np.ndarray in be.native_types:
        array = np.asarray(x)
        return array if dtype is None else array.astype(dtype, copy=False)
    return be.asarray(np.asarray(x), like=like, dtype=dtype)


def is_integer(be: Backend, x: Any) -> bool:
    """Whether ``x`` holds integers (class indices) rather than floats (probabilities)."""
    if _dispatch.owner(x, "target") is None:
        x = np.asarray(x)
        return x.dtype.kind in "iub"
    return is_integer_name(be.dtype_name(x))


def is_integer_name(dtype_name: str) -> bool:
    """Whether a backend's ``dtype_name`` names integers (or booleans)."""
    return dtype_name.startswith(("int", "uint")) or dtype_name == "bool"


def shape_of(be: Backend, x: Any) -> tuple[int | None, ...]:
    """Static shape of a framework tensor or of framework-neutral input. The twins place
    the class axis by the framework's conventions, so they need the rank statically."""
    if _dispatch.owner(x, "argument") is None:
        return np.shape(x)
    return static_shape(be, x)


def static_shape(be: Backend, x: Any) -> tuple[int | None, ...]:
    """:func:`shape_of` a tensor of ``be`` (e.g. from :func:`native`)."""
    shape = be.shape(x)
    if shape is None:
        raise _unknown_rank()
    return shape


def _unknown_rank() -> ValueError:
    return ValueError(
        "the framework twins need tensors of a known rank (their shape conventions, e.g. "
        "torch's classes on dim 1, depend on it); use xent's core functions, which take "
        "tensors of unknown rank in TensorFlow graphs"
    )


def nonzero(x: Array) -> Array:
    """Elementwise ``x != 0`` (NaN counts as non-zero), with ``<=`` / ``>=`` (see above)."""
    return ~((x <= 0) & (x >= 0))


def divide_no_nan(be: Backend, total: Array, denominator: Array, like: Array) -> Array:
    """``total / denominator``, and 0 where the denominator is 0 (Keras' and TF1's
    ``div_no_nan``; the core's ``0 / 0`` is NaN)."""
    present = nonzero(denominator)
    safe = be.where(present, denominator, 1.0)
    return be.where(present, be.divide(total, safe, like), 0.0)


def might_hold(be: Backend, labels: Array, value: int, num_classes: int | None) -> bool:
    """Whether some label may equal ``value`` (an index to ignore): False only when the
    labels were read (eager, on the host) and all lie in ``[0, num_classes)``, ``value``
    outside. Lets a twin leave a framework's default ``ignore_index=-100`` out of the core
    call (a full-size pass) when no row carries it. ``first_out_of_range(labels, 0)`` is the
    first label when the backend looks at all, None when it cannot (tracing, accelerator).
    True on a backend whose ``ignore_index`` is free (``Backend.cheap_ignore_index``)."""
    if be.cheap_ignore_index or num_classes is None or 0 <= value < num_classes:
        return True
    if be.first_out_of_range(labels, num_classes) is not None:
        return True
    return be.first_out_of_range(labels, 0) is None


def squeeze(x: Array, axis: int, rank: int) -> Array:
    """``x`` without its size-1 ``axis`` (indexing: every framework's tensors have it)."""
    axis = axis % rank
    return x[(slice(None),) * axis + (0,)]


def class_axis(axis: Any, function: str) -> int:
    """An ``int`` class axis (a 1-tuple allowed); several axes are not supported."""
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise NotImplementedError(
            f"{function}: axis={axis!r}: xent takes one class axis (an int); move the class "
            "axes together and reshape them into one first")
    return axis


def kept_count(be: Backend, where: Array, like: Array, axis: int) -> Array:
    """The number of classes ``where`` keeps, per row of ``like`` (``where`` broadcast to
    it), along ``axis``, in the dtype of ``like``."""
    dtype, axis = be.dtype_name(like), axis % len(shape_of(be, like))
    mask = be.cast(be.broadcast_like(where, like), dtype)
    ones = native(be, np.ones(shape_of(be, like)[axis]), like=like, dtype=dtype)
    return be.row_dot(mask, ones, axis)


def where_mask(be: Backend, where: Any, logits: Array, axis: int) -> Array:
    """optax's ``where``: a mask of the logits' rank, or of the loss's (one per row, expanded
    at ``axis``), as a boolean array of ``be``."""
    mask = native(be, where, like=logits)
    if len(shape_of(be, mask)) != len(shape_of(be, logits)):
        mask = be.expand_dims(mask, axis % len(shape_of(be, logits)))
    return mask


def row_sum(be: Backend, x: Array, axis: int) -> Array:
    """``x`` summed along ``axis``, keeping it (size 1)."""
    axis = axis % len(shape_of(be, x))
    ones = native(be, np.ones(shape_of(be, x)[axis]), like=x, dtype=be.dtype_name(x))
    return be.expand_dims(be.row_dot(x, ones, axis), axis)


def log(be: Backend, x: Array) -> Array:
    """Elementwise natural log: the backend protocol has none (Keras' probability inputs
    need it). The framework's own op, imported only for its own tensors."""
    if be.name == "numpy":
        with np.errstate(divide="ignore"):
            return np.log(x)
    if be.name == "torch":
        return x.log()
    if be.name == "tensorflow":
        import tensorflow as tf

        return tf.math.log(x)
    if be.name == "jax":
        import jax.numpy as jnp

        return jnp.log(x)
    if hasattr(x, "log"):
        return x.log()
    raise NotImplementedError(f"{be.name}: probability inputs need an elementwise log")
