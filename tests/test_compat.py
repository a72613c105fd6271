"""``xent.compat.v1.nn`` and ``xent.compat.v2.nn``: TensorFlow's signatures and semantics on
every backend and execution mode (the ``target`` fixture of conftest.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from xent.compat.v1 import nn as v1
from xent.compat.v2 import nn as v2

LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
SOFT = np.array([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
CLASSES = np.array([1, 2])
LOSS = np.array([0.4790107, 1.19967598])  # the seed's numbers


def _lse(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(x - _lse(x, axis))


def _params(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


# -- signatures ---------------------------------------------------------------------------

#: TensorFlow 1.15's signatures (tf.compat.v1 in TF2 dropped ``_sentinel``; TF1 had it)
TF1_SIGNATURES = {
    "softmax_cross_entropy_with_logits":
        "(_sentinel=None, labels=None, logits=None, dim=-1, name=None, axis=None)",
    "softmax_cross_entropy_with_logits_v2":
        "(labels, logits, axis=None, name=None, dim=None)",
    "sparse_softmax_cross_entropy_with_logits":
        "(_sentinel=None, labels=None, logits=None, name=None)",
    "softmax": "(logits, axis=None, name=None, dim=None)",
    "log_softmax": "(logits, axis=None, name=None, dim=None)",
}


@pytest.mark.parametrize("name", sorted(TF1_SIGNATURES))
def test_v1_has_tf1_signatures(name: str) -> None:
    fn = getattr(v1, name)
    unannotated = inspect.signature(fn).replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty)
                    for p in inspect.signature(fn).parameters.values()],
        return_annotation=inspect.Signature.empty)
    assert str(unannotated) == TF1_SIGNATURES[name]


@pytest.mark.parametrize("name", ["softmax_cross_entropy_with_logits",
                                  "sparse_softmax_cross_entropy_with_logits",
                                  "softmax", "log_softmax"])
def test_v2_has_tensorflows_own_signatures(name: str) -> None:
    tf = pytest.importorskip("tensorflow", reason="compared with TensorFlow's own signature")
    assert _params(getattr(v2, name)) == _params(getattr(tf.compat.v2.nn, name))
    assert set(v2.__all__) == {"softmax_cross_entropy_with_logits",
                               "sparse_softmax_cross_entropy_with_logits", "softmax",
                               "log_softmax"}


# -- TF1's refusal of positional calls --------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax_cross_entropy_with_logits",
                                  "sparse_softmax_cross_entropy_with_logits"])
def test_v1_refuses_positional_arguments(target, name: str) -> None:
    fn = getattr(v1, name)
    labels = CLASSES if name.startswith("sparse") else LABELS
    with pytest.raises(ValueError, match=rf"Only call `{name}` with named arguments"):
        target.run(lambda y, x: fn(x, y), labels, LOGITS)  # the pre-1.0 (logits, labels) order
    with pytest.raises(ValueError, match="both labels and logits"):
        target.run(lambda x: fn(logits=x), LOGITS)


def test_v1_dim_and_axis_conflict() -> None:
    with pytest.raises(ValueError, match="cannot specify both 'axis'"):
        v1.softmax(LOGITS, axis=0, dim=1)
    with pytest.raises(ValueError, match="cannot specify both 'axis'"):
        v1.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS, dim=0, axis=1)


# -- values on every backend and mode -----------------------------------------------------------

CALLS = {
    "v1 dense": (lambda y, x: v1.softmax_cross_entropy_with_logits(labels=y, logits=x), LABELS),
    "v1 dense dim": (lambda y, x: v1.softmax_cross_entropy_with_logits(
        labels=y, logits=x, dim=-1, name="loss"), LABELS),
    "v1 dense_v2": (lambda y, x: v1.softmax_cross_entropy_with_logits_v2(y, x, dim=-1), LABELS),
    "v1 sparse": (lambda y, x: v1.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
                  CLASSES),
    "v2 dense": (lambda y, x: v2.softmax_cross_entropy_with_logits(y, x), LABELS),
    "v2 dense axis": (lambda y, x: v2.softmax_cross_entropy_with_logits(y, x, axis=-1), LABELS),
    "v2 sparse": (lambda y, x: v2.sparse_softmax_cross_entropy_with_logits(y, x), CLASSES),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_cross_entropy_values(target, call: str) -> None:
    fn, labels = CALLS[call]
    np.testing.assert_allclose(target.run(fn, labels, LOGITS), LOSS, rtol=1e-7)


def test_dim_selects_the_class_axis(target) -> None:
    expected = (_lse(LOGITS.T, 0) - LOGITS.T)[LABELS.T.astype(bool)]
    got = target.run(lambda y, x: v1.softmax_cross_entropy_with_logits(labels=y, logits=x,
                                                                       dim=0),
                     LABELS.T.copy(), LOGITS.T.copy())
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    got = target.run(lambda x: v1.softmax(x, dim=0), LOGITS.T.copy())
    np.testing.assert_allclose(got, _softmax(LOGITS.T, 0), rtol=1e-7)


@pytest.mark.parametrize("fn, expected", [
    (lambda x: v1.softmax(x), _softmax(LOGITS)),
    (lambda x: v1.softmax(x, dim=-1, name="p"), _softmax(LOGITS)),
    (lambda x: v1.log_softmax(x, axis=1), LOGITS - _lse(LOGITS)),
    (lambda x: v2.softmax(x, -1), _softmax(LOGITS)),
    (lambda x: v2.log_softmax(x, axis=None), LOGITS - _lse(LOGITS)),
], ids=["v1 softmax", "v1 softmax dim", "v1 log_softmax", "v2 softmax", "v2 log_softmax"])
def test_softmax_values(target, fn, expected: np.ndarray) -> None:
    np.testing.assert_allclose(target.run(fn, LOGITS), expected, rtol=1e-7)


# -- gradients: v1 stops the label gradient, v2 lets it through ----------------------------------

def test_v1_stops_the_label_gradient(autodiff_target) -> None:
    value, dlabels, dlogits = autodiff_target.value_and_grad(
        lambda y, x: v1.softmax_cross_entropy_with_logits(labels=y, logits=x), SOFT, LOGITS)
    np.testing.assert_allclose(value, (SOFT * (_lse(LOGITS) - LOGITS)).sum(-1), rtol=1e-7)
    assert dlabels is None or not np.any(dlabels)
    np.testing.assert_allclose(dlogits, _softmax(LOGITS) * SOFT.sum(-1, keepdims=True) - SOFT,
                               rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda y, x: v1.softmax_cross_entropy_with_logits_v2(labels=y, logits=x),
    lambda y, x: v2.softmax_cross_entropy_with_logits(y, x),
], ids=["v1 _v2", "v2"])
def test_v2_semantics_let_the_label_gradient_through(autodiff_target, fn) -> None:
    _, dlabels, dlogits = autodiff_target.value_and_grad(fn, SOFT, LOGITS)
    assert dlabels is not None
    np.testing.assert_allclose(dlabels, np.broadcast_to(_lse(LOGITS), LOGITS.shape) - LOGITS,
                               rtol=1e-7)
    np.testing.assert_allclose(dlogits, _softmax(LOGITS) * SOFT.sum(-1, keepdims=True) - SOFT,
                               rtol=1e-7, atol=1e-12)
