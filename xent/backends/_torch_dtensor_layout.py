"""How a DTensor's placements become the local work of ``_torch_sharded`` and back.

The logits ``[..., C, ...]`` are placed on a ``DeviceMesh``; each mesh dimension either
shards a tensor dimension (``Shard(d)``), replicates (``Replicate()``) or holds pending sums
(``Partial``). :func:`layout` reads them:

- ``Shard(axis)`` (the class axis): that mesh dimension is a *class group*: the ranks along
  it hold the same rows and split their classes (the collectives of ``_torch_sharded`` run
  over it). The losses are ``Replicate`` there.
- ``Shard(d)``, ``d != axis``: the rows are split; nothing crosses it. The losses are
  ``Shard(d)`` (``d - 1`` past the class axis).
- ``Replicate()``: every rank computes the same; nothing crosses it.
- ``Partial`` (and uncommon shardings such as ``_StridedShard``) are first redistributed to
  ``Shard(axis)`` / ``Shard(d)``: the pending sums of the logits must happen anyway, and a
  reduce-scatter leaves each rank only its block of classes.

Labels and options follow the logits: a DTensor with their shape is redistributed to their
placements (free when placed alike or replicated: label traffic otherwise, never logits);
a plain tensor holds global values, of which each rank reads its block (broadcast dims
kept). Results are wrapped back with :meth:`Layout.wrap` (global shapes given, so uneven and
empty shards stay exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed.tensor import DTensor, Placement, Replicate, Shard
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from xent.backends._torch_sharded import Groups


@dataclass(frozen=True)
class Block:
    """A global shape on a mesh, its placements and this rank's block of it."""

    mesh: Any
    shape: tuple[int, ...]
    placements: tuple[Placement, ...]
    local_shape: tuple[int, ...]
    offset: tuple[int, ...]

    @staticmethod
    def of(mesh: Any, shape: tuple[int, ...], placements: tuple[Placement, ...]) -> Block:
        local, offset = compute_local_shape_and_global_offset(shape, mesh, placements)
        return Block(mesh, tuple(shape), tuple(placements), tuple(local), tuple(offset))

    @staticmethod
    def replicated(mesh: Any, shape: tuple[int, ...]) -> Block:
        return Block(mesh, tuple(shape), (Replicate(),) * mesh.ndim, tuple(shape),
                     (0,) * len(shape))

    def localize(self, value: Any) -> Any:
        """This rank's block of ``value`` (broadcastable to ``shape``; a Python scalar stays
        as it is): a DTensor of that shape is redistributed to these placements (free when
        placed alike or replicated); a plain tensor holds global values, of which each rank
        slices its block (broadcast dims are kept)."""
        if not isinstance(value, torch.Tensor):
            return value
        if isinstance(value, DTensor):
            if tuple(value.shape) == self.shape:
                return value.redistribute(self.mesh, self.placements).to_local()
            value = value.full_tensor()  # a broadcast option: small, and replicated
        elif value.requires_grad and tuple(value.shape) == self.shape:
            # global values whose gradient is wanted whole on every rank: through DTensor
            replicated = DTensor.from_local(value, self.mesh, [Replicate()] * self.mesh.ndim,
                                            run_check=False)
            return replicated.redistribute(self.mesh, self.placements).to_local()
        lead = len(self.shape) - value.dim()
        return value[tuple(
            slice(None) if n == 1 else
            slice(self.offset[lead + j], self.offset[lead + j] + self.local_shape[lead + j])
            for j, n in enumerate(value.shape))]

    def wrap(self, local: torch.Tensor) -> DTensor:
        """``local`` (this rank's block) as the DTensor of this global shape."""
        stride = torch.empty(self.shape, device="meta").stride()
        return DTensor.from_local(local, self.mesh, self.placements, run_check=False,
                                  shape=torch.Size(self.shape), stride=stride)


def plain(x: DTensor, axis: int = -1) -> DTensor:
    """``x`` with only ``Shard`` and ``Replicate`` placements: pending sums (``Partial``) are
    reduce-scattered over ``axis``, other shardings made plain ``Shard``."""
    placements = tuple(
        p if p.is_replicate() or type(p) is Shard
        else Shard(p.dim) if p.is_shard()  # type: ignore[attr-defined]
        else Shard(axis % x.ndim) if x.ndim else Replicate()
        for p in x.placements)
    if placements == tuple(x.placements):
        return x
    return x.redistribute(x.device_mesh, placements)


@dataclass(frozen=True)
class Layout:
    """The placements of logits ``[..., C, ...]`` (class axis ``axis``) and of their rows."""

    axis: int
    logits: Block
    rows: Block  # the shape of the loss: the logits without ``axis``
    groups: Groups  # the mesh dims that split the classes (of more than one rank)

    @property
    def first(self) -> int:
        """The global index of this rank's first class."""
        return self.logits.offset[self.axis]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[self.axis]

    @property
    def local_classes(self) -> int:
        return self.logits.local_shape[self.axis]


def layout(logits: DTensor, axis: int) -> tuple[DTensor, Layout]:
    """``logits`` with plain placements (see the module docstring) and their layout."""
    logits = plain(logits, axis)
    mesh, placements, shape = logits.device_mesh, tuple(logits.placements), tuple(logits.shape)
    rows = tuple(Replicate() if p.is_shard(axis) else
                 Shard(p.dim - (p.dim > axis)) if isinstance(p, Shard) else p
                 for p in placements)
    groups = tuple((mesh, i) for i, p in enumerate(placements)
                   if p.is_shard(axis) and mesh.size(i) > 1)
    return logits, Layout(axis, Block.of(mesh, shape, placements),
                          Block.of(mesh, shape[:axis] + shape[axis + 1 :], rows), groups)
