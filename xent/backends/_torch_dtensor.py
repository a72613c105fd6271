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

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.distributed.tensor import DTensor, Replicate

from xent import _options
from xent.backends import _torch_dtensor_modes as dtensor_modes
from xent.backends import _torch_sharded as sharded
from xent.backends._base import Backend
from xent.backends._torch import TorchBackend
from xent.backends._torch_dtensor_layout import layout
from xent.backends._torch_dtensor_ops import DTensorArrayOps, ShardOps, local_options

_TORCH = TorchBackend()


class DTensorBackend(DTensorArrayOps, Backend):
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
                                                 local_options(options, lay)))

    def sparse_softmax_cross_entropy_with_options(self, labels: Any, logits: DTensor,
                                                  axis: int, options: _options.Options | None
                                                  ) -> DTensor:
        x, lay = layout(logits, axis)
        ops, s = ShardOps(lay), lay.rows.localize(labels)
        if options is None:
            return lay.rows.wrap(ops.sparse_softmax_cross_entropy_with_logits(
                s, x.to_local(), axis))
        return lay.rows.wrap(_options.sparse_rows(ops, s, x.to_local(), axis,
                                                  local_options(options, lay)))

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        return dtensor_modes.run(mode, fn, *args)

    def value_and_grad(self, mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray,
                       logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return dtensor_modes.value_and_grad(mode, fn, labels, logits)
