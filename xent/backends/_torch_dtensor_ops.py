"""The array operations of the DTensor backend: on one rank's block, and on whole DTensors.

:class:`ShardOps` is what ``xent._options`` composes the options from on this rank's block
of the rows and classes (its loss kernels are ``_torch_sharded``'s). :class:`DTensorArrayOps`
is what the API layer and the reductions call on whole DTensors (the loss, labels, option
arrays) mixed with plain tensors of global values: each is computed block by block and
wrapped back, so none moves logits; the reductions are replicated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

from xent import _options
from xent.backends import _torch_sharded as sharded
from xent.backends._torch_dtensor_layout import Block, Layout, plain
from xent.backends._torch_options import TorchArrayOps

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


def local_options(opt: _options.Options, lay: Layout) -> _options.Options:
    """The options on this rank's block: its part of ``where`` and ``weights``; the class
    weights global (``ShardOps.along`` slices them, ``take`` indexes them by global labels)."""
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


class DTensorArrayOps(TorchArrayOps):
    """``Backend.where``, ``take``, ``row_dot``, ``divide``, ``reduce``, ... on DTensors and
    plain tensors of global values (all plain: as on the torch backend)."""

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
            top, bottom = both.redistribute(mesh, whole).to_local().unbind()
        else:
            top, bottom = (a.redistribute(mesh, whole).to_local() for a in (t, d))
        return Block.replicated(mesh, ()).wrap((top / bottom).to(like.dtype))

    def reduce(self, loss: Any, reduction: str) -> Any:
        """``sum`` or ``mean``, replicated: a sharded batch's pending sum is reduced here
        (``float()`` of a ``Partial`` DTensor would read this rank's part)."""
        total = loss.sum(dtype=torch.float32) if loss.dtype in _HALF else loss.sum()
        whole = (Replicate(),) * total.device_mesh.ndim
        if tuple(total.placements) != whole:
            total = total.redistribute(total.device_mesh, whole)
        if reduction == "mean":
            total = total / loss.numel()
        return total.to(loss.dtype)
