"""``xent.compat.v1.losses``: ``tf.compat.v1.losses.softmax_cross_entropy`` and its sparse
twin on every backend, equal to TensorFlow's (values and gradients) on its tensors.

Inputs and expected values follow TF's ``losses_test.py`` (``SoftmaxCrossEntropyLossTest``,
``SparseSoftmaxCrossEntropyLossTest``: all correct 0, all wrong 10, scalar and per-example
weights, all weights missing 0, some missing 12, label smoothing ``400 e / 3``, ``[batch, 1]``
labels and weights), then every ``Reduction`` and weight shape against TF itself.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from twins_support import as_numpy, assert_signature, close

from xent.compat.v1 import losses as twin

tf = pytest.importorskip("tensorflow", reason="the native comparison needs TensorFlow")
native_losses = tf.compat.v1.losses

LOGITS = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]], np.float32)
WRONG = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32)
WRONG_INDEX = np.array([[2], [0], [1]], np.int32)


@pytest.mark.parametrize(("mine", "original"), [
    (twin.softmax_cross_entropy, native_losses.softmax_cross_entropy),
    (twin.sparse_softmax_cross_entropy, native_losses.sparse_softmax_cross_entropy),
])
def test_signature_is_tf1(mine: Any, original: Any) -> None:
    assert_signature(mine, original)


def test_reduction_is_tf1s() -> None:
    assert twin.Reduction.all() == native_losses.Reduction.all()
    for key in twin.Reduction.all():
        assert getattr(twin.Reduction, {v: k for k, v in vars(twin.Reduction).items()
                                        if isinstance(v, str) and not k.startswith("_")}[key])
    with pytest.raises(ValueError, match="Invalid Reduction Key"):
        twin.softmax_cross_entropy(WRONG, LOGITS, reduction="mean")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_tf_expected_values(sparse: bool) -> None:
    fn = twin.sparse_softmax_cross_entropy if sparse else twin.softmax_cross_entropy
    wrong = WRONG_INDEX if sparse else WRONG
    right = np.array([[0], [1], [2]]) if sparse else np.eye(3, dtype=np.float32)
    close(fn(right, LOGITS), 0.0, few=1e4)
    close(fn(wrong, LOGITS), 10.0, few=1e4)
    close(fn(wrong, LOGITS, weights=2.3), 2.3 * 10.0, few=1e4)
    close(fn(wrong, tf.constant(LOGITS), weights=tf.constant(2.3)), 2.3 * 10.0, few=1e4)
    weights = np.array([1.2, 3.4, 5.6], np.float32)
    close(fn(wrong, LOGITS, weights=weights), weights.sum() * 10.0 / 3.0, few=1e4)
    close(fn(wrong, LOGITS, weights=np.zeros(3, np.float32)), 0.0)
    close(fn(wrong, LOGITS, weights=np.array([1.2, 0, 0], np.float32)), 12.0, few=1e4)
    if sparse:
        close(fn(wrong, LOGITS, weights=weights[:, None]), weights.sum() * 10.0 / 3.0, few=1e4)
    else:
        close(fn(np.array([[1, 0, 0]]), np.array([[100.0, -100.0, -100.0]]),
                 label_smoothing=0.1), 400.0 * 0.1 / 3.0, few=1e4)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 4)).astype(np.float32) * 3
T = np.array([0, 3, 1, 2, 2])
Y = RNG.dirichlet(np.ones(4), 5).astype(np.float32)
W = np.array([0.5, 0.0, 2.0, 1.0, 0.0], np.float32)
WEIGHTS = {"1.0": 1.0, "0.0": 0.0, "2.5": 2.5, "[5]": W, "zeros": np.zeros(5, np.float32)}
CASES = {f"{kind} {reduction} w={w}": (kind, reduction, w)
         for kind in ("dense", "sparse") for reduction in twin.Reduction.all()[:-1]
         for w in WEIGHTS}


def _call(module: Any, kind: str, reduction: str, w: str, labels: Any, logits: Any,
          **kwargs: Any) -> Any:
    fn = module.sparse_softmax_cross_entropy if kind == "sparse" else \
        module.softmax_cross_entropy
    if kind == "dense":
        kwargs["label_smoothing"] = 0.1
    return fn(labels, logits, weights=WEIGHTS[w], reduction=reduction, **kwargs)


@functools.cache
def native(name: str) -> tuple[np.ndarray, np.ndarray]:
    kind, reduction, w = CASES[name]
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _call(native_losses, kind, reduction, w, T if kind == "sparse" else Y, x)
        total = tf.reduce_sum(loss)
    return as_numpy(loss), as_numpy(tape.gradient(total, x))


@pytest.mark.parametrize("name", list(CASES))
def test_equals_tf1_on_tensorflow_tensors(name: str) -> None:
    kind, reduction, w = CASES[name]
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _call(twin, kind, reduction, w, T if kind == "sparse" else Y, x)
        total = tf.reduce_sum(loss)
    value, grad = native(name)
    close(as_numpy(loss), value)
    close(as_numpy(tape.gradient(total, x)), grad)


@pytest.mark.parametrize("name", ["dense weighted_sum_by_nonzero_weights w=[5]",
                                  "sparse weighted_mean w=zeros",
                                  "sparse weighted_sum_by_nonzero_weights w=1.0"])
def test_every_backend_gives_tf1s_numbers(target: Any, name: str) -> None:
    kind, reduction, w = CASES[name]
    value, grad = native(name)
    labels = T if kind == "sparse" else Y

    def loss(y: Any, x: Any) -> Any:
        return _call(twin, kind, reduction, w, y, x)

    if not target.backend.has_autodiff:
        close(target.run(loss, labels, X), value)
        return
    got, dlabels, got_grad = target.value_and_grad(loss, labels, X)
    close(got, value)
    close(got_grad, grad)
    if kind == "dense" and dlabels is not None:  # TF1: no gradient into onehot_labels
        np.testing.assert_array_equal(dlabels, 0.0)


def test_graph_adds_the_loss_to_its_collection() -> None:
    expected = as_numpy(native_losses.sparse_softmax_cross_entropy(T, X))
    with tf.Graph().as_default() as graph:
        loss = twin.sparse_softmax_cross_entropy(tf.constant(T), tf.constant(X))
        assert graph.get_collection("losses") == [loss]
        assert tf.compat.v1.losses.get_total_loss(add_regularization_losses=False) is not None
        with tf.compat.v1.Session() as session:
            close(session.run(loss), expected)


def test_collections_in_tf_function_and_eager_follow_tf() -> None:
    """TF1 adds a loss built in any graph (also a ``tf.function``'s) to the collection,
    and none built eagerly; so does the twin, whose dense loss also adds one."""
    found: dict[str, int] = {}

    @tf.function
    def traced(x: tf.Tensor) -> tf.Tensor:
        graph = tf.compat.v1.get_default_graph()
        before = len(graph.get_collection("losses"))
        native_losses.sparse_softmax_cross_entropy(tf.constant(T), x)
        found["native"] = len(graph.get_collection("losses")) - before
        twin.sparse_softmax_cross_entropy(tf.constant(T), x)
        twin.softmax_cross_entropy(tf.one_hot(T, 4), x, loss_collection="mine")
        found["twin"] = len(graph.get_collection("losses")) - before - found["native"]
        found["mine"] = len(graph.get_collection("mine"))
        return x

    traced(tf.constant(X))
    assert found == {"native": 1, "twin": 1, "mine": 1}
    eager = twin.sparse_softmax_cross_entropy(tf.constant(T), tf.constant(X))
    assert not tf.is_symbolic_tensor(eager)  # eager: no collection to add to


def test_masked_class_is_finite_where_tf_gives_nan() -> None:
    x = tf.constant([[0.5, -np.inf, 1.0]])
    y = tf.constant([[0.0, 0.0, 1.0]])
    assert np.isnan(as_numpy(native_losses.softmax_cross_entropy(y, x)))
    close(twin.softmax_cross_entropy(y, x),
          native_losses.softmax_cross_entropy(y[:, ::2], x[:, ::2]))
