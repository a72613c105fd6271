"""The torch DTensor backend: logits sharded on the class axis, the rows, or both.

A call reads the logits' placements (``_torch_dtensor_layout``), runs the per-shard work of
``_torch_sharded`` on this rank's block (two rounds of small all-reduces over the mesh
dimensions that split the classes, none over the others; never a gather of the logits) and
wraps the result back into a DTensor: the losses ``Replicate`` over the class split and
sharded like the rows, ``softmax`` / ``log_softmax`` placed like the logits.

The options are composed per shard by ``xent._options``, the code every backend runs, with
:class:`ShardOps`: its loss kernels are the sharded ones, ``one_hot`` and the class weights
know this rank's classes, smoothing uses the global ``C``. Reductions are replicated: over
a sharded batch they add one all-reduce (``weighted_mean``, and ``mean`` with
``ignore_index``: of the sum and the denominator together).

Labels may be DTensors (redistributed to the logits' placements: free when placed alike or
replicated), plain torch tensors of the global labels, or NumPy; options likewise. A sparse
label out of range gives a NaN row on every rank: checking would need a collective, and one
rank raising while the others wait in one is a deadlock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

from xent import _options
from xent.backends import _torch_dtensor_modes as dtensor_modes
from xent.backends import _torch_sharded as sharded
from xent.backends._base import Backend
from xent.backends._torch import TorchBackend
from xent.backends._torch_dtensor_layout import Block, Layout, layout, plain
from xent.backends._torch_options import TorchArrayOps

_TORCH = TorchBackend()
_HALF = (torch.float16, torch.bfloat16)


class ShardOps(TorchArrayOps):
    """``xent._options``'s operations on this rank's block of the rows and classes."""

    def __init__(self, lay: Layout) -> None:
        self.lay = lay

    def softmax_cross_entropy_with_logits(self, labels: torch.Tensor, logits: torch.Tensor,
                                          axis: int) -> torch.Tensor:
        return sharded.DenseLoss.apply(labels, logits, axis, self.lay.groups)

    def sparse_softmax_cross_entropy_with_logits(self, labels: torch.Tensor,
                                                 logits: torch.Tensor,
                                                 axis: int) -> torch.Tensor:
        lay = self.lay
        return sharded.SparseLoss.apply(labels, logits, axis, lay.first, lay.num_classes,
                                        lay.groups)

    def one_hot(self, index: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
        out = torch.zeros_like(like)
        if like.shape[axis] == 0:
            return out
        local = index.long() - self.lay.first
        here = (local >= 0) & (local < like.shape[axis])
        return out.scatter(axis, local.clamp(0, like.shape[axis] - 1).unsqueeze(axis),
                           here.unsqueeze(axis).to(like.dtype))

    def along(self, vector: torch.Tensor, axis: int, like: torch.Tensor) -> torch.Tensor:
        first = self.lay.first  # this rank's classes of the global [C] vector
        return super().along(vector[first : first + self.lay.local_classes], axis, like)


def _global(x: Any) -> Any:
    """A small option array's global values on this rank (a replicated DTensor's are local)."""
    return x.full_tensor() if isinstance(x, DTensor) else x


def _local_options(opt: _options.Options, lay: Layout) -> _options.Options:
    return dataclasses.replace(
        opt, where=None if opt.where is None else lay.logits.localize(opt.where),
        weights=None if opt.weights is None else lay.rows.localize(opt.weights),
        class_weights=_global(opt.class_weights))


def _elementwise(fn: Callable[..., torch.Tensor], shape: tuple[int, ...], args: tuple[Any, ...],
                 hint: Any = None) -> Any:
    """``fn(*args)`` of result shape ``shape``, computed block by block: on the blocks of the
    DTensor argument of that shape (the other arguments localized to it), wrapped back; with
    none, replicated on the mesh of a DTensor argument or of ``hint``. All plain: plain."""
    tensors = [a for a in (*args, hint) if isinstance(a, DTensor)]
    if not tensors:
        return fn(*args)
    ref = next((a for a in tensors if tuple(a.shape) == tuple(shape)), None)
    mesh = tensors[0].device_mesh
    if ref is None:
        block = Block.replicated(mesh, tuple(shape))
    else:
        ref = plain(ref)
        block = Block.of(mesh, tuple(ref.shape), tuple(ref.placements))
    return block.wrap(fn(*(block.localize(a) for a in args)))


def _shape(*args: Any) -> tuple[int, ...]:
    return tuple(torch.broadcast_shapes(*(a.shape for a in args if isinstance(a, torch.Tensor))))


class DTensorBackend(TorchArrayOps, Backend):
    """``torch.distributed.tensor.DTensor`` logits on any ``DeviceMesh``."""

    name = "dtensor"
    module = "torch.distributed.tensor"  # in sys.modules wherever a DTensor exists
    accepts = ("torch",)  # plain torch tensors of global labels and options
    modes = dtensor_modes.MODES
    tracing_modes = dtensor_modes.MODES  # a sparse label out of range: NaN rows, never a raise
    has_autodiff = True
    relative_accuracy = True
    dtypes = ("float16", "bfloat16", "float32", "float64")
    #: mode -> the catalog cases and dtypes the test suite runs (``xent conformance``: all)
    mode_cases = dtensor_modes.MODE_CASES
    mode_dtypes = dtensor_modes.MODE_DTYPES

    def __reduce__(self) -> tuple[Any, ...]:  # the registry's object in a worker process
        from xent import backends

        return backends.get, (self.name,)

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, DTensor)

    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)  # global

    def dtype_name(self, x: torch.Tensor) -> str:
        return _TORCH.dtype_name(x)

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> DTensor:
        """Global values (NumPy, a plain torch tensor) as a DTensor replicated on the mesh
        of ``like``, on its device."""
        if not isinstance(like, DTensor):
            raise TypeError(
                "dtensor: framework-neutral input has no device mesh; make the logits a "
                "DTensor (torch.distributed.tensor.distribute_tensor) or use the torch backend")
        tensor = _TORCH.asarray(value, like=like, dtype=dtype)  # on like's (local) device
        return DTensor.from_local(tensor, like.device_mesh,
                                  [Replicate()] * like.device_mesh.ndim, run_check=False)

    def cast(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        return _TORCH.cast(x, dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return _TORCH.to_numpy(x.full_tensor() if isinstance(x, DTensor) else x)

    def stop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    def first_out_of_range(self, labels: Any, num_classes: int) -> int | None:
        return None  # NaN rows instead (see the module docstring)

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: DTensor, axis: int) -> DTensor:
        x, lay = layout(logits, axis)
        return lay.logits.wrap(sharded.Softmax.apply(x.to_local(), axis, lay.groups))

    def log_softmax(self, logits: DTensor, axis: int) -> DTensor:
        x, lay = layout(logits, axis)
        return lay.logits.wrap(sharded.LogSoftmax.apply(x.to_local(), axis, lay.groups))

    def softmax_cross_entropy_with_logits(self, labels: Any, logits: DTensor,
                                          axis: int) -> DTensor:
        return self.softmax_cross_entropy_with_options(labels, logits, axis, None)

    def sparse_softmax_cross_entropy_with_logits(self, labels: Any, logits: DTensor,
                                                 axis: int) -> DTensor:
        return self.sparse_softmax_cross_entropy_with_options(labels, logits, axis, None)

    def softmax_cross_entropy_with_options(self, labels: Any, logits: DTensor, axis: int,
                                           options: _options.Options | None) -> DTensor:
        x, lay = layout(logits, axis)
        ops, y = ShardOps(lay), lay.logits.localize(labels)
        if options is None:
            return lay.rows.wrap(ops.softmax_cross_entropy_with_logits(y, x.to_local(), axis))
        return lay.rows.wrap(_options.dense_rows(ops, y, x.to_local(), axis,
                                                 _local_options(options, lay)))

    def sparse_softmax_cross_entropy_with_options(self, labels: Any, logits: DTensor,
                                                  axis: int, options: _options.Options | None
                                                  ) -> DTensor:
        x, lay = layout(logits, axis)
        ops, s = ShardOps(lay), lay.rows.localize(labels)
        if options is None:
            return lay.rows.wrap(ops.sparse_softmax_cross_entropy_with_logits(
                s, x.to_local(), axis))
        return lay.rows.wrap(_options.sparse_rows(ops, s, x.to_local(), axis,
                                                  _local_options(options, lay)))

    # -- the array operations of the API layer and the reductions (DTensors or global values)
    def where(self, condition: Any, x: Any, y: Any) -> Any:
        return _elementwise(super().where, _shape(condition, x, y), (condition, x, y))

    def take(self, table: Any, index: Any) -> Any:
        values = _global(table)
        return _elementwise(lambda i: TorchArrayOps.take(self, values, i), tuple(index.shape),
                            (index,), hint=table)

    def broadcast_like(self, x: Any, like: Any) -> Any:
        return _elementwise(lambda a, b: a.expand(b.shape), tuple(like.shape), (x, like))

    def row_dot(self, labels: Any, vector: Any, axis: int) -> Any:
        """``sum_c labels_c vector_c``: each rank's classes, pending a sum over the class
        split (``Partial``)."""
        if not isinstance(labels, DTensor):  # global labels: a replicated result
            dot = TorchArrayOps.row_dot(self, labels, _global(vector), axis)
            if not isinstance(vector, DTensor):
                return dot
            return Block.replicated(vector.device_mesh, tuple(dot.shape)).wrap(dot)
        labels = plain(labels)
        block = Block.of(labels.device_mesh, tuple(labels.shape), tuple(labels.placements))
        first, size = block.offset[axis], block.local_shape[axis]
        dot = TorchArrayOps.row_dot(self, labels.to_local(), _global(vector)[first : first + size],
                                    axis)
        rows = tuple(Partial() if p.is_shard(axis) else
                     Shard(p.dim - (p.dim > axis)) if isinstance(p, Shard) else p
                     for p in block.placements)
        return Block.of(block.mesh, block.shape[:axis] + block.shape[axis + 1 :], rows).wrap(dot)

    def divide(self, total: Any, denominator: Any, like: Any) -> Any:
        """``total / denominator``, both reduced first, in one all-reduce when they are
        pending sums alike."""
        if not isinstance(total, DTensor) and not isinstance(denominator, DTensor):
            return super().divide(total, denominator, like)
        mesh = (total if isinstance(total, DTensor) else denominator).device_mesh
        t, d = (a if isinstance(a, DTensor) else Block.replicated(mesh, ()).wrap(a)
                for a in (total, denominator))
        whole = (Replicate(),) * mesh.ndim
        if t.placements == d.placements and t.placements != whole:
            both = torch.stack([t.to_local(), d.to_local().to(t.dtype)])
            both = DTensor.from_local(both, mesh, t.placements, run_check=False)
            t, d = both.redistribute(mesh, whole).to_local().unbind()
        else:
            t, d = (a.redistribute(mesh, whole).to_local() for a in (t, d))
        return Block.replicated(mesh, ()).wrap((t / d).to(like.dtype))

    def reduce(self, loss: DTensor, reduction: str) -> DTensor:
        """``sum`` or ``mean``, replicated: a sharded batch's pending sum is reduced here
        (``float()`` of a ``Partial`` DTensor would read this rank's part)."""
        total = loss.sum(dtype=torch.float32) if loss.dtype in _HALF else loss.sum()
        whole = (Replicate(),) * total.device_mesh.ndim
        if tuple(total.placements) != whole:
            total = total.redistribute(total.device_mesh, whole)
        if reduction == "mean":
            total = total / loss.numel()
        return total.to(loss.dtype)

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        return dtensor_modes.run(mode, fn, *args)

    def value_and_grad(self, mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray,
                       logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return dtensor_modes.value_and_grad(mode, fn, labels, logits)
