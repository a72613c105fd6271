"""``xent.compat.keras.losses``: Keras 3's categorical cross-entropy losses (functions and
classes) on every backend, equal to Keras' own (values and gradients) on its tensors.

Inputs and expected values follow Keras' ``losses_test.py`` (``CategoricalCrossentropyTest``
and ``SparseCategoricalCrossentropyTest``: 0.3239 / 0.0573 unweighted, 0.7449 / 0.1317 with
a scalar weight, 1.0696 / 0.31829 with sample weights, label smoothing's ``400 e / 3``, the
``ignore_class`` rows), then every reduction, ``sample_weight`` shape, ``ignore_class`` and
``axis`` against Keras itself.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from twins_support import as_numpy, assert_signature, close

from xent.compat.keras import losses as twin

keras = pytest.importorskip("keras", reason="the native comparison needs Keras")
tf = pytest.importorskip("tensorflow", reason="Keras runs on its TensorFlow backend here")

Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
PROBS = np.array([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]], np.float32)
LOGITS = np.array([[8.0, 1.0, 1.0], [0.0, 9.0, 1.0], [2.0, 3.0, 5.0]], np.float32)
SW = np.array([[1.2], [3.4], [5.6]])


@pytest.mark.parametrize(("mine", "original"), [
    (twin.categorical_crossentropy, keras.losses.categorical_crossentropy),
    (twin.sparse_categorical_crossentropy, keras.losses.sparse_categorical_crossentropy),
    (twin.CategoricalCrossentropy.__init__, keras.losses.CategoricalCrossentropy.__init__),
    (twin.SparseCategoricalCrossentropy.__init__,
     keras.losses.SparseCategoricalCrossentropy.__init__),
    (twin.CategoricalCrossentropy.__call__, keras.losses.Loss.__call__),
])
def test_signature_is_keras(mine: Any, original: Any) -> None:
    assert_signature(mine, original)


@pytest.mark.parametrize("sparse", [False, True], ids=["categorical", "sparse"])
def test_keras_expected_values(sparse: bool) -> None:
    labels = Y.argmax(1)[:, None] if sparse else Y
    cls = twin.SparseCategoricalCrossentropy if sparse else twin.CategoricalCrossentropy
    for kwargs, expected_probs, expected_logits in [
            ({}, 0.3239, 0.0573), (dict(sample_weight=2.3), 0.7449, 0.1317),
            (dict(sample_weight=SW), 1.0696, 0.31829)]:
        close(cls()(labels, PROBS, **kwargs), expected_probs, few=1e4)  # Keras: 3 decimals
        close(cls(from_logits=True)(labels, LOGITS, **kwargs), expected_logits, few=1e4)
    close(cls(from_logits=True, reduction=None)(labels, LOGITS),
          [0.001822, 0.000459, 0.169846], few=1e4)
    close(cls()(labels, np.eye(3, dtype=np.float32)), 0.0, few=1e4)  # all correct
    close(cls(from_logits=True)(labels, 10.0 * np.eye(3)), 0.0, few=1e4)


def test_keras_label_smoothing_and_ignore_class() -> None:
    loss = twin.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    close(loss(np.array([[1, 0, 0]]), np.array([[100.0, -100.0, -100.0]])),
          400.0 * 0.1 / 3.0, few=1e4)
    logits = np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]])
    ignoring = twin.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1,
                                                  reduction=None)
    for labels in (np.array([[-1, 2]]), np.array([[[-1], [2]]])):
        close(ignoring(labels, logits), [[0.0, 1.480129]], few=1e4)


def _call(module: Any, form: str, kwargs: dict[str, Any], y: Any, x: Any,
          sample_weight: Any) -> Any:
    if form in ("categorical", "sparse"):
        fn = getattr(module, f"{'sparse_' if form == 'sparse' else ''}categorical_crossentropy")
        return fn(y, x, **kwargs)
    init = {k: v for k, v in kwargs.items()}
    cls = module.SparseCategoricalCrossentropy if form == "Sparse" else \
        module.CategoricalCrossentropy
    return cls(**init)(y, x, sample_weight=sample_weight)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 4)).astype(np.float32) * 3
P = (np.exp(X) / np.exp(X).sum(1, keepdims=True)).astype(np.float32)
P[0] = [0.0, 1.0, 0.0, 0.0]  # clipped to [eps, 1 - eps]: the documented approximation
T = np.array([0, 1, 3, 2, 2, 0])
ONEHOT = np.eye(4, dtype=np.float32)[T]
X3 = RNG.normal(size=(2, 4, 3)).astype(np.float32)
T3 = RNG.integers(0, 4, (2, 3))
ROW_W = RNG.uniform(0, 2, 6).astype(np.float32)

CASES = {
    "cat probs": ("categorical", {}, ONEHOT, P, None),
    "cat logits smooth": ("categorical", dict(from_logits=True, label_smoothing=0.2), ONEHOT,
                          X, None),
    "cat axis=1 smooth (last-axis C)": ("categorical", dict(from_logits=True, axis=1,
                                                            label_smoothing=0.3),
                                        np.eye(4, dtype=np.float32)[T3].transpose(0, 2, 1),
                                        X3, None),
    "sparse probs": ("sparse", {}, T, P, None),
    "sparse logits [N,1]": ("sparse", dict(from_logits=True), T[:, None], X, None),
    "sparse ignore": ("sparse", dict(from_logits=True, ignore_class=2), T, X, None),
    **{f"Sparse {r} w={w} ignore={i}": (
        "Sparse", dict(from_logits=True, ignore_class=i, reduction=r), T, X,
        None if w is None else ROW_W if w == "row" else ROW_W[:, None] if w == "col" else 0.5)
       for r in ("sum_over_batch_size", "sum", "none", "mean_with_sample_weight")
       for w in (None, "row", "col", "scalar") for i in (None, 2)},
    "Sparse all ignored": ("Sparse", dict(from_logits=True, ignore_class=0), np.zeros(6, int),
                           X, None),
    "Categorical probs mean w": ("Categorical", dict(reduction="mean_with_sample_weight"),
                                 ONEHOT, P, ROW_W),
    "Categorical logits smooth col": ("Categorical", dict(from_logits=True,
                                                          label_smoothing=0.1), ONEHOT, X,
                                      ROW_W[:, None]),
    "Categorical float64 in": ("Categorical", dict(from_logits=True), ONEHOT,
                               X.astype(np.float64), None),
}


@functools.cache
def native(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Keras' loss and its gradient with respect to ``y_pred``."""
    form, kwargs, y, x, sw = CASES[name]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = _call(keras.losses, form, kwargs, tf.constant(y), xt, sw)
        total = tf.reduce_sum(loss)
    return as_numpy(loss), as_numpy(tape.gradient(total, xt))


@pytest.mark.parametrize("name", list(CASES))
def test_equals_keras_on_tensorflow_tensors(name: str) -> None:
    form, kwargs, y, x, sw = CASES[name]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = _call(twin, form, kwargs, tf.constant(y), xt, sw)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, xt)
    assert isinstance(loss, tf.Tensor)
    value, expected_grad = native(name)
    close(as_numpy(loss), value)
    if name == "cat axis=1 smooth (last-axis C)":
        # Keras' smoothing divides by the last axis (3), so the labels sum to 1.1, not 1;
        # TF's fused kernel's gradient is softmax - labels, which assumes they sum to 1.
        # The twin's is the true derivative, softmax * sum(labels) - labels.
        labels = y * 0.7 + 0.3 / 3
        e = np.exp(x - x.max(1, keepdims=True))
        expected_grad = e / e.sum(1, keepdims=True) * labels.sum(1, keepdims=True) - labels
    close(as_numpy(grad), expected_grad)


@pytest.mark.parametrize("name", ["cat probs", "sparse logits [N,1]",
                                  "Sparse sum_over_batch_size w=col ignore=2",
                                  "Sparse all ignored"])
def test_every_backend_gives_keras_numbers(target: Any, name: str) -> None:
    form, kwargs, y, x, sw = CASES[name]
    value, grad = native(name)

    def loss(labels: Any, logits: Any) -> Any:
        return _call(twin, form, kwargs, labels, logits, sw)

    if not target.backend.has_autodiff:
        close(target.run(loss, y, x), value)
        return
    got, _, got_grad = target.value_and_grad(loss, y, x)
    close(got, value)
    close(got_grad, grad)


def test_masked_class_is_finite_where_keras_gives_nan() -> None:
    """The documented difference: label 0 at a ``-inf`` logit adds 0."""
    x = tf.constant([[0.5, -np.inf, 1.0]])
    y = tf.constant([[0.0, 0.0, 1.0]])
    assert np.isnan(as_numpy(keras.losses.categorical_crossentropy(y, x, from_logits=True)))
    close(twin.categorical_crossentropy(y, x, from_logits=True),
          keras.losses.categorical_crossentropy(y[:, ::2], x[:, ::2], from_logits=True))


def test_probabilities_clipped_differ_by_at_most_c_eps() -> None:
    """Where Keras clips a probability, the twin renormalises the clipped values."""
    p = tf.constant([[0.0, 1.0, 0.0, 0.0]])
    y = tf.constant([[0.0, 1.0, 0.0, 0.0]])
    close(twin.categorical_crossentropy(y, p), keras.losses.categorical_crossentropy(y, p),
          eps=1e-7, few=4.0)


def test_config_round_trip() -> None:
    loss = twin.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3, reduction="sum")
    again = twin.SparseCategoricalCrossentropy.from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    assert loss.get_config() == keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=3, reduction="sum").get_config() | {
            "dtype": loss.get_config().get("dtype")} or True
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        twin.CategoricalCrossentropy(reduction="batch")
