"""The three ways TensorFlow code runs, for the conformance suite and the tests.

``eager``: TF2 eager tensors, gradients by ``tf.GradientTape``.
``function``: the same inside a ``tf.function`` (tensors are symbolic while tracing).
``graph``: TF1 style: placeholders in a ``tf.Graph``, ``tf.compat.v1.gradients``, values
fetched with a ``tf.compat.v1.Session``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

MODES = ("eager", "function", "graph")


def _check(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"tensorflow: unknown mode {mode!r}; expected one of {', '.join(MODES)}")


def _numpy(x: Any) -> Any:
    return tf.nest.map_structure(lambda t: None if t is None else np.asarray(t.numpy()), x)


def run(mode: str, fn: Callable[..., Any], *args: np.ndarray) -> Any:
    """``fn(*args)`` with the NumPy ``args`` as TF tensors in ``mode``; the result as NumPy."""
    _check(mode)
    if mode == "graph":
        with tf.Graph().as_default() as graph:
            holders = [tf.compat.v1.placeholder(tf.as_dtype(a.dtype), a.shape) for a in args]
            out = fn(*holders)
            with tf.compat.v1.Session(graph=graph) as session:
                return session.run(out, feed_dict=dict(zip(holders, args)))
    tensors = [tf.constant(a) for a in args]
    return _numpy(_in(mode, fn)(*tensors))


def _in(mode: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself (eager) or a one-off ``tf.function`` of it. The partial has no
    ``__code__``: TF's frequent-retracing warning counts traces per code object, and every
    call here traces once, on purpose."""
    return tf.function(functools.partial(fn)) if mode == "function" else fn


def _differentiable(array: np.ndarray) -> bool:
    return bool(tf.as_dtype(array.dtype).is_floating)


def value_and_grad(
    mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``fn(labels, logits)`` and the gradients of its sum: ``(value, dlabels, dlogits)``.

    ``dlabels`` is None for integer labels and where no gradient flows (``stop_gradient``)."""
    _check(mode)
    with_labels = _differentiable(labels)
    if mode == "graph":
        return _graph_value_and_grad(fn, labels, logits, with_labels)

    def taped(y: tf.Tensor, x: tf.Tensor) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            if with_labels:
                tape.watch(y)
            value = fn(y, x)
            total = tf.reduce_sum(value)
        grads = tape.gradient(total, [y, x] if with_labels else [x])
        return value, (grads[0] if with_labels else None), grads[-1]

    value, dy, dx = _numpy(_in(mode, taped)(tf.constant(labels), tf.constant(logits)))
    return value, dy, _zeros_if_none(dx, logits)


def _graph_value_and_grad(
    fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray, with_labels: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    with tf.Graph().as_default() as graph:
        y = tf.compat.v1.placeholder(tf.as_dtype(labels.dtype), labels.shape, name="labels")
        x = tf.compat.v1.placeholder(tf.as_dtype(logits.dtype), logits.shape, name="logits")
        value = fn(y, x)
        sources = [y, x] if with_labels else [x]
        grads = tf.compat.v1.gradients(tf.reduce_sum(value), sources)
        fetch = [value] + [g for g in grads if g is not None]
        with tf.compat.v1.Session(graph=graph) as session:
            results = iter(session.run(fetch, feed_dict={y: labels, x: logits}))
    out = next(results)
    computed = [None if g is None else next(results) for g in grads]
    dy = computed[0] if with_labels else None
    return out, dy, _zeros_if_none(computed[-1], logits)


def _zeros_if_none(grad: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if grad is None else grad
