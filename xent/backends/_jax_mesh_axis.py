"""The JAX backend inside ``jax.shard_map``, on a class axis split along a named mesh axis.

``xent.softmax_cross_entropy_with_logits(..., axis_name="model")`` inside a ``shard_map``
whose mesh splits the logits' class axis over the axis ``"model"``: each device holds
``C / size`` consecutive classes (device ``i`` of the axis holds ``i * C / size`` onwards,
``shard_map``'s order), and every function gives the global result of the whole class axis
(this device's shard of it, for ``softmax`` / ``log_softmax``), computed by the vocab-parallel
steps of :mod:`xent.backends._jax_sharded` with two collectives forward and none backward
for the losses. Conventions:

- ``logits``, dense ``labels`` and ``where`` are this device's shard of the classes;
  sparse ``labels`` are global class indices, the same on every shard of the class axis;
  ``class_weights`` is the global ``[C]`` vector; ``weights`` is per row, as usual.
- ``C`` (label smoothing, the range of sparse labels) is the global class count.
- Reductions (``sum``, ``mean``, ``weighted_mean``) run over the rows this device holds:
  a batch split over other mesh axes is the caller's to ``psum`` (as for any loss).
- A sparse label out of range gives a NaN row, never an error: one device must not raise
  while the others wait in a collective.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from xent import _validate
from xent.backends import _jax_sharded
from xent.backends._jax import JaxBackend
from xent.backends._jax_ops import _up, in_range

Array = Any


class MeshAxisBackend(JaxBackend):
    """:class:`JaxBackend` whose class axis is split along the mesh axis ``axis_name``."""

    def __init__(self, axis_name: Any) -> None:
        self.axis_name = axis_name

    @property
    def class_shards(self) -> int:  # type: ignore[override]
        try:
            return int(lax.axis_size(self.axis_name))
        except NameError:  # not inside a shard_map over that axis
            raise _validate.unbound_mesh_axis(self.axis_name) from None

    def first_out_of_range(self, labels: Array, num_classes: int) -> int | None:
        return None  # NaN rows: no device may raise while the others wait

    def softmax(self, logits: Array, axis: int) -> Array:
        return _softmax(logits, axis, self._across())

    def log_softmax(self, logits: Array, axis: int) -> Array:
        return _log_softmax(logits, axis, self._across())

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                          axis: int) -> Array:
        return _dense(labels, logits, axis, self._across())

    def sparse_softmax_cross_entropy_with_logits(self, labels: Array, logits: Array,
                                                 axis: int) -> Array:
        return _sparse(labels, logits, axis, self._across())

    # the loss options' class-indexed operations, on this device's shard of the classes
    def one_hot(self, index: Array, like: Array, axis: int) -> Array:
        first = _jax_sharded.shard_offset(like, axis, self.axis_name)
        return jax.nn.one_hot(index - first, like.shape[axis], dtype=like.dtype, axis=axis)

    def along(self, vector: Array, axis: int, like: Array) -> Array:
        return super().along(self._local(vector, like, axis), axis, like)

    def row_dot(self, labels: Array, vector: Array, axis: int) -> Array:
        local = super().row_dot(labels, self._local(vector, labels, axis), axis)
        return lax.psum(local, self.axis_name)

    def class_count(self, logits: Array, axis: int, dtype: str | None) -> Any:
        count = _jax_sharded.num_classes(logits, axis, self.axis_name)
        return count if dtype is None else jnp.asarray(count, dtype)

    def _local(self, vector: Array, like: Array, axis: int) -> Array:
        """This device's classes of a global ``[C]`` vector."""
        first = _jax_sharded.shard_offset(like, axis, self.axis_name)
        return lax.dynamic_slice_in_dim(vector, first, like.shape[axis])

    def _across(self) -> Any:
        self.class_shards  # noqa: B018 - a clear error outside a shard_map over the axis
        return self.axis_name

    def __repr__(self) -> str:
        return f"<xent backend 'jax' on mesh axis {self.axis_name!r}>"


@cache
def on_mesh_axis(axis_name: Any) -> MeshAxisBackend:
    """The backend for ``axis_name`` (one per name: jit caches key on it)."""
    return MeshAxisBackend(axis_name)


@partial(jax.jit, static_argnums=(1, 2))
def _softmax(logits: Array, axis: int, across: Any) -> Array:
    return _jax_sharded.softmax(_up(logits), axis, across).astype(logits.dtype)


@partial(jax.jit, static_argnums=(1, 2))
def _log_softmax(logits: Array, axis: int, across: Any) -> Array:
    return _jax_sharded.log_softmax(_up(logits), axis, across).astype(logits.dtype)


@partial(jax.jit, static_argnums=(2, 3))
def _dense(labels: Array, logits: Array, axis: int, across: Any) -> Array:
    loss = _jax_sharded.dense_loss(_up(labels), _up(logits), axis, across)
    return loss.astype(logits.dtype)


@partial(jax.jit, static_argnums=(2, 3))
def _sparse(labels: Array, logits: Array, axis: int, across: Any) -> Array:
    """NaN (value and gradient) for a label outside ``[0, C)`` of the global ``C``."""
    x = _up(logits)
    valid = in_range(labels, _jax_sharded.num_classes(x, axis, across))
    loss = _jax_sharded.sparse_loss(labels, x, axis, across)
    return (loss * jnp.where(valid, 1, jnp.nan).astype(x.dtype)).astype(logits.dtype)
