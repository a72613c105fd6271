"""Where a torch call runs, for the backend's choices: in plain eager code, under a
``torch.func`` transform or forward-mode AD (every op out of place), or traced by
``torch.compile`` (no value may be read); and where sparse labels' values can be read on
the host for the eager range check.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad

# torch.func's vmap/grad/jvp wrappers (no storage of their own), and the older batched
# tensors that autograd.grad(..., is_grads_batched=True) gives a backward
from torch._C._functorch import get_unwrapped as _unwrapped
from torch._C._functorch import is_functorch_wrapped_tensor as _wrapped
from torch._C._functorch import is_legacy_batchedtensor as _legacy_batched


def transformed(*tensors: torch.Tensor) -> bool:
    """True under forward-mode AD or a ``torch.func`` transform of one of ``tensors``: then
    every op must be out of place (vmap cannot write a batched value into an unbatched
    buffer), and the autograd node must have its forward-mode rule."""
    if forward_ad._current_level >= 0:  # a dual_level is open (there is no public query)
        return True
    for t in tensors:  # a loop, not any(...): this runs on every eager call
        if _wrapped(t) or _legacy_batched(t):
            return True
    return False


def host_values(x: torch.Tensor) -> torch.Tensor | None:
    """The tensor holding ``x``'s values when they can be read on the host without an
    accelerator sync or a trace break, else None. Under ``torch.func`` transforms (eager,
    on CPU) that is the tensor under the wrappers: every batch entry's values."""
    if torch.compiler.is_compiling():
        return None
    while _wrapped(x):
        x = _unwrapped(x)
    if not x.is_cpu or (type(x) is not torch.Tensor and not torch._C._has_storage(x)):
        return None  # an accelerator, or a tensor subclass with no values (FakeTensor)
    return x


def checks_on_host(x: torch.Tensor) -> bool:
    """True when the API layer has range-checked the sparse labels ``x`` on the host."""
    return host_values(x) is not None


def to_host_numpy(x: torch.Tensor) -> np.ndarray:
    """``x.numpy()`` (no copy) for a tensor from :func:`host_values`."""
    if not torch._C._are_functorch_transforms_active():
        return x.numpy()
    with torch._C._DisableFuncTorch():  # else functorch intercepts .numpy() too, and fails
        return x.numpy()
