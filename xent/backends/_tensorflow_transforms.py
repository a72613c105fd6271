"""TensorFlow's value-producing transforms as conformance modes.

``xla``: the function inside ``tf.function(jit_compile=True)`` (a tape or a
``ForwardAccumulator`` inside it for derivatives).
``vectorized_map``: the function mapped by ``tf.vectorized_map(...,
fallback_to_while_loop=False)`` (every op needs a vectorisation rule) over a leading batch
axis holding the input twice; the two entries must come back equal (to a few units in the
last place, NaN equal to NaN) and the first is returned, so what is checked is the function
of the input itself.

Each transformed function is built once per Python function (the conformance runner's
calls are stable objects) and retraced, and recompiled, only for new shapes and dtypes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

MODES = ("xla", "vectorized_map")
COPIES = 2  # the batch of vectorized_map: the input and a copy


def wrap(mode: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` through the transform ``mode``: a callable of tensors returning tensors."""
    return _xla(fn) if mode == "xla" else _vectorized(fn)


@functools.lru_cache(maxsize=256)
def _xla(fn: Callable[..., Any]) -> Callable[..., Any]:
    # the partial has no __code__: TF's frequent-retracing warning counts traces per code
    # object, and a new case shape retraces on purpose
    return tf.function(functools.partial(fn), jit_compile=True)


@functools.lru_cache(maxsize=256)
def _vectorized(fn: Callable[..., Any]) -> Callable[..., Any]:
    def batched(*tensors: tf.Tensor) -> Any:
        stacked = tuple(tf.stack([t] * COPIES) for t in tensors)
        return tf.vectorized_map(lambda entry: fn(*entry), stacked,
                                 fallback_to_while_loop=False)

    mapped = tf.function(functools.partial(batched))

    def first_of_equal_entries(*tensors: tf.Tensor) -> Any:
        out = mapped(*tensors)
        for t in tf.nest.flatten(out):
            if t is not None and not _entries_equal(t.numpy()):
                raise AssertionError(
                    "tensorflow vectorized_map: the entries of a batch of equal inputs differ")
        return tf.nest.map_structure(lambda t: None if t is None else t[0], out)

    return first_of_equal_entries


#: Relative difference allowed between the entries: TF's own kernels may round the rows of a
#: batch differently (its fused softmax of one class gives 0.99999994 in one float32 entry
#: and 1 in the other); mixing up entries is off by far more.
ULPS = 4
_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def _entries_equal(batch: np.ndarray) -> bool:
    """Whether every entry of ``batch`` equals the first: exactly for integers, within
    ``ULPS`` units in the last place for floats, NaN where NaN, the same infinities."""
    eps = _EPS.get(batch.dtype.name)
    if eps is None:
        return all(np.array_equal(batch[0], entry) for entry in batch[1:])
    wide = batch.astype(np.float64)  # also bfloat16, which NumPy's isnan does not know
    first = wide[0]
    for entry in wide[1:]:
        with np.errstate(invalid="ignore"):  # inf - inf
            close = np.abs(entry - first) <= ULPS * eps * np.maximum(abs(entry), abs(first))
        close &= np.isfinite(first)  # an infinity equals only itself
        if not (close | (entry == first) | (np.isnan(entry) & np.isnan(first))).all():
            return False
    return True


def release() -> None:
    """Forget the transformed functions cached above, and so their traces and XLA
    programs."""
    _xla.cache_clear()
    _vectorized.cache_clear()
