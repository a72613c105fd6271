"""NumPy <-> torch conversion for the torch backend (framework-neutral input, tests,
conformance): dtypes by NumPy-style name, bfloat16 through ``ml_dtypes``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name`` (``"float32"``, ``"bfloat16"``, ``"int64"``, ...)."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"torch backend: no torch dtype called {name!r}")
    return dtype


def from_numpy(value: Any) -> torch.Tensor:
    """A CPU tensor from framework-neutral input (never sharing a read-only buffer)."""
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":  # torch cannot read ml_dtypes' bfloat16
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    if not array.flags.writeable or any(s < 0 for s in array.strides):
        array = array.copy()  # torch warns on read-only and refuses negative strides
    return torch.from_numpy(array)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a concrete tensor (bfloat16 as ``ml_dtypes.bfloat16`` if installed)."""
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:  # NumPy has no bfloat16 of its own
        array = x.float().numpy()
        try:
            import ml_dtypes

            return array.astype(ml_dtypes.bfloat16)
        except ImportError:
            return array
    return x.numpy()
