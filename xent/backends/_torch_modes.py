"""How the conformance suite runs torch code: ``eager``, and the transforms ``vmap`` and
``compile``, each computing the same quantities *through* the transform.

- ``eager``: values ``fn(*tensors)``; gradients ``torch.autograd.grad``; forward mode with
  dual tensors (``torch.autograd.forward_ad``).
- ``vmap``: ``torch.func.vmap(fn)`` over a batch of two problems, the input and a copy
  (raises unless both come back equal); gradients ``vmap(torch.func.grad_and_value)``;
  forward mode ``vmap(torch.func.jvp)``.
- ``compile``: ``torch.compile(fn, fullgraph=True, dynamic=True)``; gradients by its compiled
  backward; forward mode ``torch.compile(torch.func.jvp)``. It fails instead of falling back
  to eager when dynamo's recompile limit is hit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad

from xent.backends._torch_convert import from_numpy, to_numpy

MODES = ("eager",)
TRANSFORM_MODES = ("vmap", "compile")
TRACING_MODES = ("compile",)  # label values are not read: out-of-range rows give NaN
#: compile: each new rank, class axis, dtype, label dtype, size 0 or 1, or class count past
#: 4096 compiles about ten graphs with inductor (seconds each); these float32 cases share one.
SUITE_CELLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "compile": (
        ("seed", "random_1", "random_10", "random_100", "logits_1e4", "near_max", "near_ties",
         "confident", "masked", "masked_all_but_one", "nan_row", "inf_rows", "soft_labels",
         "unnormalised_labels", "zero_labels", "sparse_out_of_range"),
        ("float32",),
    ),
}
_BATCH = 2
_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


def check(mode: str) -> None:
    """Raise ValueError for a mode the torch backend does not have."""
    if mode not in MODES + TRANSFORM_MODES:
        raise ValueError(f"torch: unknown mode {mode!r}; expected one of "
                         f"{', '.join(MODES + TRANSFORM_MODES)}")


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn, fullgraph=True, dynamic=True)``, made once per ``fn`` (a new
    ``torch.compile`` wrapper would not reuse the code already compiled for ``fn``)."""
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, fullgraph=True, dynamic=True)
    return _compiled[fn]


def _call(mode: str, fn: Callable[..., Any], consts: tuple[Any, ...], *tensors: Any) -> Any:
    """``fn(*consts, *tensors)`` in ``mode`` (``vmap``: over the leading axis of each tensor)."""
    if mode == "vmap":
        return torch.func.vmap(functools.partial(fn, *consts))(*tensors)
    if mode == "compile":
        # each case and dtype may add a cache entry: fail rather than silently run eagerly
        with torch._dynamo.config.patch(recompile_limit=1024, fail_on_recompile_limit_hit=True):
            return compiled(fn)(*consts, *tensors)
    return fn(*consts, *tensors)


def _batch(mode: str, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """vmap: each tensor stacked with a copy of itself; other modes: as they are."""
    if mode != "vmap":
        return list(tensors)
    return [torch.stack([t] + [t.clone() for _ in range(_BATCH - 1)]) for t in tensors]


def _numpy(mode: str, x: torch.Tensor | None) -> np.ndarray | None:
    """``x`` as NumPy; under vmap the first batch entry, after checking the others equal it."""
    if x is None:
        return None
    if mode != "vmap":
        return to_numpy(x)
    first = to_numpy(x[0])
    for i in range(1, x.shape[0]):
        if not np.array_equal(to_numpy(x[i]), first, equal_nan=True):
            raise AssertionError(f"torch vmap: batch entry {i} differs from entry 0 "
                                 "although the problems are equal")
    return first


def run(mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
    """``fn(*args)`` in ``mode``, NumPy in and out (``Backend.run``)."""
    check(mode)
    out = _call(mode, fn, (), *_batch(mode, [from_numpy(a) for a in args]))
    result = _numpy(mode, out)
    assert result is not None
    return result


def value_and_grad(
    mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``fn(labels, logits)`` and the gradients of its sum, through ``mode``'s transform
    (``Backend.value_and_grad``); the labels gradient is None for integer labels."""
    check(mode)
    y, x = _batch(mode, [from_numpy(labels), from_numpy(logits)])
    with_labels = y.is_floating_point()
    if mode == "vmap":
        def summed(y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value = fn(y, x)
            return value.sum(), value

        argnums = (0, 1) if with_labels else (1,)
        grad = torch.func.grad_and_value(summed, argnums=argnums, has_aux=True)
        grads, (_, value) = torch.func.vmap(grad)(y, x)
        dlabels, dlogits = grads if with_labels else (None, grads[0])
    else:
        inputs = (y.requires_grad_(True), x.requires_grad_(True)) if with_labels else (
            x.requires_grad_(True),)
        value = _call(mode, fn, (), y, x)
        grads = torch.autograd.grad(value.sum(), inputs, allow_unused=True)
        dlogits = grads[-1] if grads[-1] is not None else torch.zeros_like(x)
        dlabels = grads[0] if with_labels else None
    out, dy, dx = (_numpy(mode, t) for t in (value, dlabels, dlogits))
    assert out is not None and dx is not None
    return out, dy, dx


def jvp(
    mode: str,
    fn: Callable[..., Any],
    args: tuple[np.ndarray, ...],
    tangents: tuple[np.ndarray | None, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """``fn(*args)`` and its forward-mode derivative along ``tangents`` (None: held
    constant), through ``mode``'s transform (``Backend.jvp``)."""
    check(mode)
    primals = [from_numpy(a) for a in args]
    live = tuple(i for i, t in enumerate(tangents) if t is not None)
    fixed = tuple(i for i in range(len(primals)) if i not in live)
    directions = [from_numpy(tangents[i]).to(primals[i].dtype) for i in live]
    flat = _batch(mode, [primals[i] for i in fixed + live] + directions)
    value, tangent = _call(mode, _jvp, (fn, fixed, live, mode == "eager"), *flat)
    out, d_out = _numpy(mode, value), _numpy(mode, tangent)
    assert out is not None and d_out is not None
    return out, d_out


def _jvp(
    fn: Callable[..., torch.Tensor], fixed: tuple[int, ...], live: tuple[int, ...],
    dual_tensors: bool, *flat: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(*args)`` and its tangent. ``flat``: the args held constant (positions
    ``fixed``), the args that move (positions ``live``), then their tangents. By dual
    tensors (``torch.autograd.forward_ad``) or by ``torch.func.jvp``."""
    full: list[Any] = [None] * (len(fixed) + len(live))
    for i, value in zip(fixed, flat):
        full[i] = value
    moving, along = flat[len(fixed):len(full)], flat[len(full):]

    def of_moving(*moved: torch.Tensor) -> torch.Tensor:
        for i, value in zip(live, moved):
            full[i] = value
        return fn(*full)

    if not dual_tensors:
        result = torch.func.jvp(of_moving, tuple(moving), tuple(along))
        return result[0], result[1]
    with forward_ad.dual_level():
        out = of_moving(*(forward_ad.make_dual(p, t) for p, t in zip(moving, along)))
        value, tangent = forward_ad.unpack_dual(out)
    return value, torch.zeros_like(value) if tangent is None else tangent


def release() -> None:
    """Forget the ``torch.compile`` wrappers made above (``Backend.release``). Dynamo's own
    cache stays: it is keyed by the code of the runner's calls, which every case shares, so
    later cases of a signature already compiled reuse it (``torch._dynamo.reset()`` made
    them compile again, 0.3 s -> 6 s a case, without fewer memory mappings)."""
    _compiled.clear()
