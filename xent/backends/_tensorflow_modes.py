"""The ways TensorFlow code runs, for the conformance suite and the tests.

Execution modes:

``eager``: TF2 eager tensors, gradients by ``tf.GradientTape``.
``function``: the same inside a ``tf.function`` (tensors are symbolic while tracing).
``graph``: TF1 style: placeholders in a ``tf.Graph``, ``tf.compat.v1.gradients``, values
fetched with a ``tf.compat.v1.Session``.

Transform modes (the same quantities, computed through a transform; see
``_tensorflow_transforms``):

``xla``: inside ``tf.function(jit_compile=True)``.
``vectorized_map``: ``tf.vectorized_map(..., fallback_to_while_loop=False)`` over a batch of
two copies of the input; both entries must come back equal, the first is returned.

Forward mode (:func:`jvp`) runs ``tf.autodiff.ForwardAccumulator`` in every mode, also inside
a TF1 graph.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from xent.backends import _tensorflow_transforms as transforms

MODES = ("eager", "function", "graph")
TRANSFORM_MODES = transforms.MODES


def _check(mode: str) -> None:
    if mode not in MODES + TRANSFORM_MODES:
        raise ValueError(f"tensorflow: unknown mode {mode!r}; expected one of "
                         f"{', '.join(MODES + TRANSFORM_MODES)}")


def _numpy(x: Any) -> Any:
    return tf.nest.map_structure(lambda t: None if t is None else np.asarray(t.numpy()), x)


def run(mode: str, fn: Callable[..., Any], *args: np.ndarray) -> Any:
    """``fn(*args)`` with the NumPy ``args`` as TF tensors in ``mode``; the result as NumPy."""
    _check(mode)
    if mode == "graph":
        return _in_graph(fn, args)
    return _numpy(_in(mode, fn)(*[tf.constant(a) for a in args]))


def _in(mode: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself (eager), a one-off ``tf.function`` of it, or its transform. The partial
    has no ``__code__``: TF's frequent-retracing warning counts traces per code object, and
    every call here traces once, on purpose."""
    if mode in TRANSFORM_MODES:
        return transforms.wrap(mode, fn)
    return tf.function(functools.partial(fn)) if mode == "function" else fn


def _in_graph(fn: Callable[..., Any], args: Sequence[np.ndarray]) -> Any:
    """``fn`` of placeholders in a new TF1 graph, run in a ``Session`` on ``args``."""
    with tf.Graph().as_default() as graph:
        holders = [tf.compat.v1.placeholder(tf.as_dtype(a.dtype), a.shape) for a in args]
        out = fn(*holders)
        fetch = tf.nest.map_structure(lambda t: tf.zeros([0]) if t is None else t, out)
        with tf.compat.v1.Session(graph=graph) as session:
            values = session.run(fetch, feed_dict=dict(zip(holders, args)))
    return tf.nest.map_structure(lambda t, v: None if t is None else v, out, values)


def _differentiable(array: np.ndarray) -> bool:
    return bool(tf.as_dtype(array.dtype).is_floating)


def value_and_grad(
    mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``fn(labels, logits)`` and the gradients of its sum: ``(value, dlabels, dlogits)``.

    ``dlabels`` is None for integer labels and where no gradient flows (``stop_gradient``;
    zeros under ``vectorized_map``, whose outputs cannot be None)."""
    _check(mode)
    with_labels = _differentiable(labels)
    if mode == "graph":
        def graph_grad(y: tf.Tensor, x: tf.Tensor) -> tuple[Any, Any, Any]:
            value = fn(y, x)
            sources = [y, x] if with_labels else [x]
            grads = tf.compat.v1.gradients(tf.reduce_sum(value), sources)
            return value, (grads[0] if with_labels else None), grads[-1]

        value, dy, dx = _in_graph(graph_grad, (labels, logits))
        return value, dy, _zeros_if_none(dx, logits)
    zeros = mode == "vectorized_map"  # its outputs cannot be None
    value, dy, dx = _numpy(_in(mode, _taped(fn, with_labels, zeros))(tf.constant(labels),
                                                                      tf.constant(logits)))
    return value, dy, _zeros_if_none(dx, logits)


@functools.lru_cache(maxsize=256)  # one object per fn: a transform compiles it once per shape
def _taped(fn: Callable[[Any, Any], Any], with_labels: bool,
           zeros: bool) -> Callable[[Any, Any], Any]:
    """``(y, x) -> (fn(y, x), d sum/dy or None, d sum/dx)`` by a ``GradientTape``."""
    unconnected = tf.UnconnectedGradients.ZERO if zeros else tf.UnconnectedGradients.NONE

    def taped(y: tf.Tensor, x: tf.Tensor) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            if with_labels:
                tape.watch(y)
            value = fn(y, x)
            total = tf.reduce_sum(value)
        grads = tape.gradient(total, [y, x] if with_labels else [x],
                              unconnected_gradients=unconnected)
        return value, (grads[0] if with_labels else None), grads[-1]

    return taped


def jvp(
    mode: str, fn: Callable[..., Any], args: Sequence[np.ndarray],
    tangents: Sequence[np.ndarray | None],
) -> tuple[np.ndarray, np.ndarray]:
    """``fn(*args)`` and its directional derivative along ``tangents`` (``None``: that
    argument held constant), by ``tf.autodiff.ForwardAccumulator`` in ``mode``."""
    _check(mode)
    if len(tangents) != len(args):
        raise ValueError(f"tensorflow: {len(args)} arguments but {len(tangents)} tangents")
    moving = tuple(i for i, t in enumerate(tangents) if t is not None)
    # a tangent has its primal's dtype (ForwardAccumulator requires it)
    directions = [np.asarray(tangents[i]).astype(args[i].dtype) for i in moving]
    forward = _forward(fn, len(args), moving)
    if mode == "graph":
        return _in_graph(forward, (*args, *directions))
    tensors = [tf.constant(a) for a in (*args, *directions)]
    return _numpy(_in(mode, forward)(*tensors))


@functools.lru_cache(maxsize=256)
def _forward(fn: Callable[..., Any], count: int,
             moving: tuple[int, ...]) -> Callable[..., tuple[Any, Any]]:
    """``(*primals, *tangents of the moving ones) -> (fn(*primals), its JVP)``."""

    def forward(*tensors: tf.Tensor) -> tuple[Any, Any]:
        primals, along = tensors[:count], tensors[count:]
        with tf.autodiff.ForwardAccumulator([primals[i] for i in moving], list(along)) as acc:
            value = fn(*primals)
        return value, acc.jvp(value, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return forward


def _zeros_if_none(grad: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if grad is None else grad


def release() -> None:
    """Forget the taped and forward-mode functions cached above and the transformed ones
    (``Backend.release``). What TF keeps itself stays: its XLA compilation cache (in the
    device's resource manager, with no eviction and no public way to clear it: ~220 memory
    mappings a case and dtype in ``xla`` mode), and the gradients ``tf.custom_gradient``
    registers for good on each graph it is traced in."""
    _taped.cache_clear()
    _forward.cache_clear()
    transforms.release()
