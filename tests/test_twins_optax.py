"""``xent.compat.optax`` and ``xent.compat.jax.nn``: optax's losses and ``jax.nn``'s softmax
on every backend, equal to the originals (values and gradients) on JAX arrays.

Inputs and expected values follow optax's ``_classification_test.py`` and
``_smoothing_test.py`` (the rlax values 9.00013 and 3.0696733, the per-logit mask whose
all-masked row is 0, the axis tests, the ``safe_softmax_cross_entropy`` rows with ``-inf``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from twins_support import as_numpy, assert_signature, close

from xent.compat import optax as twin
from xent.compat.jax import nn as twin_nn

jax = pytest.importorskip("jax", reason="the native comparison needs JAX")
optax = pytest.importorskip("optax", reason="the native comparison needs optax")
jnp = jax.numpy

YS = np.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2]], np.float32)
TS = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
INDEX = np.array([1, 0], np.int32)
EXPECTED = np.array([9.00013, 3.0696733], np.float32)  # optax's (from rlax)
ROW_MASK = np.array([True, False])
LOGIT_MASK = np.array([[1, 0, 0], [0, 0, 0]]).astype(bool)
RNG = np.random.default_rng(0)
X3 = RNG.normal(size=(4, 5, 6)).astype(np.float32)
Y3 = RNG.dirichlet(np.ones(6), size=(4, 5)).astype(np.float32)
MASK3 = RNG.random((4, 5, 6)) > 0.3


@pytest.mark.parametrize(("mine", "original"), [
    (twin.softmax_cross_entropy, optax.softmax_cross_entropy),
    (twin.softmax_cross_entropy_with_integer_labels,
     optax.softmax_cross_entropy_with_integer_labels),
    (twin.smooth_labels, optax.smooth_labels),
    (twin_nn.softmax, jax.nn.softmax), (twin_nn.log_softmax, jax.nn.log_softmax),
])
def test_signature_is_optax_and_jax(mine: Any, original: Any) -> None:
    assert_signature(mine, original)


def test_optax_expected_values() -> None:
    close(twin.softmax_cross_entropy(YS, TS), EXPECTED, few=1e3)  # optax: atol 1e-4
    close(jax.jit(twin.softmax_cross_entropy)(YS[0], TS[0]), EXPECTED[0], few=1e3)
    close(twin.softmax_cross_entropy_with_integer_labels(YS, INDEX), EXPECTED, few=1e3)
    out = twin.softmax_cross_entropy(YS, TS, where=LOGIT_MASK)
    assert out[1] == 0.0  # every logit masked: 0, as optax
    for size in (5, 10):
        preds, targets = RNG.normal(size=size), RNG.dirichlet(np.ones(size))
        mask = RNG.integers(2, size=size).astype(bool)
        close(twin.softmax_cross_entropy(preds, targets, where=mask),
              twin.softmax_cross_entropy(preds[mask], targets[mask]), np.finfo(float).eps)


CASES = {
    "dense": (twin.softmax_cross_entropy, optax.softmax_cross_entropy, YS, TS, {}),
    "dense row mask": (twin.softmax_cross_entropy, optax.softmax_cross_entropy, YS, TS,
                       dict(where=ROW_MASK)),
    "dense logit mask": (twin.softmax_cross_entropy, optax.softmax_cross_entropy, YS, TS,
                         dict(where=LOGIT_MASK)),
    **{f"dense axis={a}": (twin.softmax_cross_entropy, optax.softmax_cross_entropy,
                           np.moveaxis(X3, -1, a), np.moveaxis(Y3, -1, a), dict(axis=a))
       for a in (0, 1)},
    "dense 3-D mask": (twin.softmax_cross_entropy, optax.softmax_cross_entropy, X3, Y3,
                       dict(where=MASK3)),
    "integer": (twin.softmax_cross_entropy_with_integer_labels,
                optax.softmax_cross_entropy_with_integer_labels, YS, INDEX, {}),
    "integer row mask": (twin.softmax_cross_entropy_with_integer_labels,
                         optax.softmax_cross_entropy_with_integer_labels, YS, INDEX,
                         dict(where=ROW_MASK)),
    "integer logit mask, label kept": (
        twin.softmax_cross_entropy_with_integer_labels,
        optax.softmax_cross_entropy_with_integer_labels, YS, np.array([0, 2], np.int32),
        dict(where=np.array([[1, 0, 1], [0, 0, 0]]).astype(bool))),
    **{f"integer axis={a}": (twin.softmax_cross_entropy_with_integer_labels,
                             optax.softmax_cross_entropy_with_integer_labels,
                             np.moveaxis(X3, -1, a), Y3.argmax(-1).astype(np.int32),
                             dict(axis=a)) for a in (0, 1)},
}


@pytest.mark.parametrize("name", list(CASES))
def test_equals_optax_on_jax_arrays(name: str) -> None:
    mine, original, logits, labels, kwargs = CASES[name]
    x, y = jnp.asarray(logits), jnp.asarray(labels)

    @jax.jit  # one compilation for both functions, values and gradients
    def both(x: Any) -> Any:
        return [jax.value_and_grad(lambda x, fn=fn: fn(x, y, **kwargs).sum())(x)
                + (fn(x, y, **kwargs),) for fn in (mine, original)]

    (_, grad, value), (_, expected_grad, expected_value) = both(x)
    close(value, expected_value)
    close(grad, expected_grad)


def test_returns_jax_arrays_eagerly() -> None:
    out = twin.softmax_cross_entropy(jnp.asarray(YS), TS, where=LOGIT_MASK)
    assert isinstance(out, jax.Array)
    close(out, optax.softmax_cross_entropy(YS, TS, where=LOGIT_MASK))


@functools.cache
def _native(name: str) -> tuple[np.ndarray, np.ndarray]:
    _, original, logits, labels, kwargs = CASES[name]
    y = jnp.asarray(labels)
    value, grad = jax.jit(jax.value_and_grad(
        lambda x: original(x, y, **kwargs).sum()))(jnp.asarray(logits))
    return as_numpy(original(jnp.asarray(logits), y, **kwargs)), as_numpy(grad)


@pytest.mark.parametrize("name", ["dense logit mask", "dense axis=1", "integer row mask"])
def test_every_backend_gives_optaxs_numbers(target: Any, name: str) -> None:
    mine, _, logits, labels, kwargs = CASES[name]
    value, grad = _native(name)
    def loss(y: Any, x: Any) -> Any:
        return mine(x, y, **kwargs)
    if not target.backend.has_autodiff:
        close(target.run(loss, labels, logits), as_numpy(value))
        return
    got, _, got_grad = target.value_and_grad(loss, labels, logits)
    close(got, as_numpy(value))
    close(got_grad, as_numpy(grad))


def test_minus_inf_gives_safe_softmax_cross_entropy() -> None:
    """The documented difference: label 0 at a ``-inf`` logit adds 0 (optax's plain loss:
    NaN; its ``safe_softmax_cross_entropy`` agrees with the twin)."""
    ys = np.array([[-np.inf, 0.0, 0.0], [-np.inf, 0.0, 0.0], [-np.inf, 0.0, -np.inf]],
                  np.float32)
    ts = np.array([[0.0, 0.5, 0.5], [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]], np.float32)
    expected = np.array([0.693147, np.inf, 0.0], np.float32)
    assert np.isnan(np.asarray(optax.softmax_cross_entropy(ys, ts))).any()
    close(twin.softmax_cross_entropy(jnp.asarray(ys), jnp.asarray(ts)), expected, few=1e3)
    close(optax.safe_softmax_cross_entropy(ys, ts), expected, few=1e3)
    grad = jax.jit(jax.grad(
        lambda x: twin.softmax_cross_entropy(x, ts)[np.array([0, 2])].sum()))(ys)
    assert np.isfinite(np.asarray(grad)).all()


def test_sparse_label_on_excluded_class_is_zero_like_dense() -> None:
    """The documented difference: optax's integer-label loss reads an excluded label's
    logit; the twin, like optax's dense loss (and xent's rule sparse == dense), gives 0."""
    where = np.array([[True, False, True]])
    sparse = twin.softmax_cross_entropy_with_integer_labels(YS[:1], np.array([1]), where=where)
    dense = optax.softmax_cross_entropy(YS[:1], TS[:1], where=where)
    assert float(sparse[0]) == 0.0 == float(dense[0])


def test_smooth_labels_equal_optax() -> None:
    for alpha in (0.0, 0.1, 1.0):
        close(twin.smooth_labels(TS, alpha), 0.9 * TS + 0.1 / 3 if alpha == 0.1 else
              TS if alpha == 0.0 else np.full_like(TS, 1 / 3))
        close(twin.smooth_labels(jnp.asarray(TS), alpha),
              optax.smooth_labels(jnp.asarray(TS), alpha))
    where = np.array([[1, 1, 0], [1, 1, 1]]).astype(bool)
    close(twin.smooth_labels(jnp.asarray(TS), 0.2, where=jnp.asarray(where)),
          optax.smooth_labels(jnp.asarray(TS), 0.2, where=jnp.asarray(where)))
    close(twin.smooth_labels(Y3, 0.3, axis=1), optax.smooth_labels(jnp.asarray(Y3), 0.3, axis=1))


def test_jax_nn_softmax_equals_jax() -> None:
    x = jnp.asarray(X3)
    mask = jnp.asarray(MASK3 & (np.arange(4) > 0)[:, None, None])  # batch 0: no class left

    @jax.jit
    def every(x: Any) -> Any:
        return [(f(x, 0), g(x, 0), f(x, -1), g(x, -1), f(x, where=mask), g(x, where=mask))
                for f, g in ((twin_nn.softmax, jax.nn.softmax),
                             (twin_nn.log_softmax, jax.nn.log_softmax))]

    for outputs in every(x):
        for got, expected in zip(outputs[::2], outputs[1::2]):
            close(got, expected)
    grad = jax.jit(jax.grad(lambda x: (twin_nn.log_softmax(x, where=mask)
                                       * jnp.where(mask, 1.0, 0.0)).sum()))(x)
    expected = jax.jit(jax.grad(lambda x: (jax.nn.log_softmax(x, where=mask)
                                           * jnp.where(mask, 1.0, 0.0)).sum()))(x)
    close(grad, expected)


def test_several_axes_are_refused_clearly() -> None:
    with pytest.raises(NotImplementedError, match="one class axis"):
        twin.softmax_cross_entropy_with_integer_labels(X3, Y3.argmax(-1)[..., 0], axis=(1, 2))
