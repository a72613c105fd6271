"""Argument handling shared by the TF-signature twins, as TensorFlow does it."""

from __future__ import annotations

from typing import Any


def axis_or_dim(axis: Any, dim: Any, default: int = -1) -> int:
    """TF's ``deprecated_argument_lookup("axis", axis, "dim", dim)``."""
    if axis is not None and dim is not None and axis != dim:
        raise ValueError(f"axis: cannot specify both 'axis' ({axis}) and 'dim' ({dim})")
    if axis is not None:
        return int(axis)
    return default if dim is None else int(dim)


def named_only(function: str, sentinel: Any, labels: Any, logits: Any) -> None:
    """TF1's ``_ensure_xent_args``: refuse positional calls, require labels and logits."""
    if sentinel is not None:
        raise ValueError(
            f"Only call `{function}` with named arguments (labels=..., logits=..., ...). "
            f"Received unnamed argument: {sentinel!r}"
        )
    if labels is None or logits is None:
        raise ValueError(f"{function}: both labels and logits must be provided")
