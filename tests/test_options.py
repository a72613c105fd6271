"""Loss options (DESIGN section 6): one meaning on every backend.

Properties (hypothesis, every backend): sparse == dense(one-hot) under every option and
reduction; an option at its neutral value equals no option; an ignored row equals removing
it; a class excluded by ``where`` equals deleting it. Then the frameworks' own meanings where
they coincide with xent's (torch's weighted mean, TF1's ``MEAN``), gradients of ignored rows
and excluded classes, and inputs left unmodified. The exact values are the conformance
suite's (``opt_*`` cases).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_properties import SETTINGS, setup

import xent
from xent.backends import Backend

dense = xent.softmax_cross_entropy_with_logits
sparse = xent.sparse_softmax_cross_entropy_with_logits
REDUCTIONS = ("none", "sum", "mean", "weighted_mean")
OPTIONS = ("weights", "class_weights", "label_smoothing", "where")
#: JAX compiles each new shape: fewer examples than the plain properties, many calls each
FEW = settings(SETTINGS, max_examples=12)


@st.composite
def option_problems(draw, max_rank: int = 3):  # type: ignore[no-untyped-def]
    """(logits, sparse labels, axis, options): finite logits, a random subset of options."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_rank, min_side=1, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1)) % len(shape)
    classes = shape[axis]
    reduced = shape[:axis] + shape[axis + 1:]
    logits = draw(hnp.arrays(np.float64, shape, elements=st.floats(-30, 30)))
    index = draw(hnp.arrays(np.int64, reduced, elements=st.integers(0, classes - 1)))
    chosen = draw(st.sets(st.sampled_from(OPTIONS)))
    options: dict[str, Any] = {}
    if "weights" in chosen:  # the loss shape, or a trailing part of it (broadcast)
        tail = draw(st.integers(0, len(reduced)))
        options["weights"] = draw(hnp.arrays(np.float64, reduced[len(reduced) - tail:],
                                             elements=st.floats(0, 4)))
    if "class_weights" in chosen:
        options["class_weights"] = draw(hnp.arrays(np.float64, classes,
                                                   elements=st.floats(0.25, 4)))
    if "label_smoothing" in chosen:
        options["label_smoothing"] = draw(st.floats(0, 1))
    if "where" in chosen:
        mask = draw(hnp.arrays(np.bool_, shape))
        np.moveaxis(mask, axis, -1)[..., 0] = True  # every row keeps a class (else NaN)
        options["where"] = mask
    return logits, index, axis, options


def one_hot(index: np.ndarray, classes: int, axis: int) -> np.ndarray:
    return np.moveaxis(np.eye(classes)[index], -1, axis)


def close(a: Any, b: Any, tol: float) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=tol * 10, atol=tol * 100, equal_nan=True)


def converted(to: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Options as tensors of the backend (float arrays in its float dtype)."""
    return {k: to(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}


# -- properties ------------------------------------------------------------------------------
@SETTINGS
@given(option_problems(), st.sampled_from(REDUCTIONS), st.booleans())
def test_sparse_equals_dense_one_hot_under_every_option(  # type: ignore[no-untyped-def]
        backend: Backend, problem, reduction: str, native_options: bool) -> None:
    logits, index, axis, options = problem
    to, out, tol = setup(backend)
    if native_options:
        options = converted(to, options)
    y = one_hot(index, logits.shape[axis], axis)
    a = out(sparse(labels=to(index), logits=to(logits), axis=axis, reduction=reduction,
                   **options))
    b = out(dense(labels=to(y), logits=to(logits), axis=axis, reduction=reduction, **options))
    close(a, b, tol)


@FEW
@given(option_problems(), st.sampled_from(REDUCTIONS))
def test_an_option_at_its_neutral_value_is_no_option(  # type: ignore[no-untyped-def]
        backend: Backend, problem, reduction: str) -> None:
    logits, index, axis, _ = problem
    to, out, tol = setup(backend)
    x, y = to(logits), to(one_hot(index, logits.shape[axis], axis))
    neutral = [dict(weights=np.ones(logits.shape[:axis] + logits.shape[axis + 1:])),
               dict(class_weights=np.ones(logits.shape[axis])), dict(label_smoothing=0.0),
               dict(where=np.ones(logits.shape, bool)), dict(weights=1.0)]
    plain = out(dense(labels=y, logits=x, axis=axis, reduction=reduction))
    plain_sparse = out(sparse(labels=to(index), logits=x, axis=axis, reduction=reduction))
    for option in neutral:
        close(out(dense(labels=y, logits=x, axis=axis, reduction=reduction, **option)), plain, tol)
        close(out(sparse(labels=to(index), logits=x, axis=axis, reduction=reduction, **option)),
              plain_sparse, tol)
    close(out(sparse(labels=to(index), logits=x, axis=axis, reduction=reduction,
                     ignore_index=-100)), plain_sparse, tol)


@FEW
@given(option_problems(max_rank=2), st.sampled_from(("sum", "mean")), st.data())
def test_an_ignored_row_equals_removing_it(  # type: ignore[no-untyped-def]
        backend: Backend, problem, reduction: str, data) -> None:
    logits, index, axis, options = problem
    to, out, tol = setup(backend)
    x = np.moveaxis(logits, axis, -1).reshape(-1, logits.shape[axis])  # rows x classes
    labels = index.reshape(-1).copy()
    options = {k: v for k, v in options.items() if k in ("class_weights", "label_smoothing")}
    ignored = np.array(data.draw(st.lists(st.booleans(), min_size=len(labels),
                                          max_size=len(labels))))
    labels[ignored] = -100
    x_poisoned = np.where(ignored[:, None], np.nan, x)  # an ignored row is never read
    got = out(sparse(labels=to(labels), logits=to(x_poisoned), reduction=reduction,
                     ignore_index=-100, **options))
    kept = ~ignored
    expected = out(sparse(labels=to(labels[kept]), logits=to(x[kept]), reduction=reduction,
                          **options))
    close(got, expected, tol)


@FEW
@given(option_problems(max_rank=2), st.sampled_from(REDUCTIONS))
def test_an_excluded_class_equals_deleting_it(  # type: ignore[no-untyped-def]
        backend: Backend, problem, reduction: str) -> None:
    logits, index, axis, options = problem
    to, out, tol = setup(backend)
    classes = logits.shape[axis]
    if classes < 2:
        return
    labels = np.moveaxis(np.abs(logits) / 30, axis, -1).reshape(-1, classes)  # soft labels
    x = np.moveaxis(logits, axis, -1).reshape(-1, classes)
    kept = np.arange(classes) != classes - 1  # exclude the last class
    cw = options.get("class_weights")
    extra = {} if cw is None else {"class_weights": cw}
    x_poisoned = np.where(kept, x, np.nan)  # an excluded class is never read
    got = out(dense(labels=to(np.where(kept, labels, np.nan)), logits=to(x_poisoned),
                    where=kept, reduction="none", **extra))
    deleted = {} if cw is None else {"class_weights": cw[kept]}
    expected = out(dense(labels=to(labels[:, kept]), logits=to(x[:, kept]), reduction="none",
                         **deleted))
    close(got, expected, tol)
    close(out(xent.softmax(to(x_poisoned), where=kept))[:, kept],
          out(xent.softmax(to(x[:, kept]))), tol)
    assert (out(xent.softmax(to(x_poisoned), where=kept))[:, ~kept] == 0).all()
    assert (out(xent.log_softmax(to(x_poisoned), where=kept))[:, ~kept] == -np.inf).all()


# -- the meanings spelled out ----------------------------------------------------------------
X = np.array([[0.5, 1.5, 0.1, -1.0], [2.2, 1.3, 1.7, 0.0], [-0.3, 0.2, 0.9, 3.1]])
INDEX = np.array([1, -100, 3])
CW = np.array([0.5, 2.0, 1.0, 3.0])
ROWS = np.array([1.5, 2.0, 0.25])


def test_weighted_mean_divides_by_the_weights_of_the_rows_not_ignored(backend: Backend) -> None:
    to, out, tol = setup(backend)
    per_row = out(sparse(labels=INDEX, logits=to(X), ignore_index=-100, class_weights=CW,
                         weights=ROWS))
    assert per_row[1] == 0.0
    omega = ROWS[[0, 2]] * CW[[1, 3]]
    got = out(sparse(labels=INDEX, logits=to(X), ignore_index=-100, class_weights=CW,
                     weights=ROWS, reduction="weighted_mean"))
    close(got, per_row.sum() / omega.sum(), tol)
    close(out(sparse(labels=INDEX, logits=to(X), ignore_index=-100, reduction="mean")),
          out(sparse(labels=INDEX[[0, 2]], logits=to(X[[0, 2]]), reduction="mean")), tol)
    y = one_hot(np.array([1, 0, 3]), 4, 1)
    close(out(dense(labels=y, logits=to(X), class_weights=CW, weights=ROWS,
                    reduction="weighted_mean")),
          out(dense(labels=y, logits=to(X), class_weights=CW, weights=ROWS, reduction="sum"))
          / (ROWS * (y @ CW)).sum(), tol)


def test_an_empty_denominator_is_nan(backend: Backend) -> None:
    to, out, _ = setup(backend)
    for reduction in ("mean", "weighted_mean"):
        value = out(sparse(labels=[-100, -100, -100], logits=to(X), ignore_index=-100,
                           reduction=reduction))
        assert np.isnan(value), reduction
    assert np.isnan(out(dense(labels=np.ones_like(X), logits=to(X), weights=np.zeros(3),
                              reduction="weighted_mean")))


@pytest.mark.parametrize("mask", ["[C]", "full"])
def test_an_empty_batch_takes_every_option(backend: Backend, mask: str) -> None:
    """No rows, with every option (a ``where`` of ``[C]`` or of the logits' shape): an empty
    loss, a sum of 0, a mean of NaN (0 / 0)."""
    to, out, _ = setup(backend)
    x = np.zeros((0, 4))
    where = np.array([True, False, True, True]) if mask == "[C]" else np.ones(x.shape, bool)
    options = dict(where=where, class_weights=CW, label_smoothing=0.1, weights=np.zeros(0))
    for call, labels, more in ((sparse, np.zeros(0, np.int64), dict(ignore_index=-100)),
                               (dense, x, {})):
        assert out(call(labels=labels, logits=to(x), **options, **more)).shape == (0,)
        assert out(call(labels=labels, logits=to(x), reduction="sum", **options, **more)) == 0
        assert np.isnan(out(call(labels=labels, logits=to(x), reduction="mean", **options,
                                 **more)))


def test_smoothing_spreads_over_every_class_even_excluded_ones(backend: Backend) -> None:
    """``e / C`` uses C of the class axis; the excluded classes' share is dropped."""
    to, out, tol = setup(backend)
    e, keep = 0.4, np.array([True, True, False, True])
    got = out(sparse(labels=[1, 0, 3], logits=to(X), label_smoothing=e, where=keep))
    x = X[:, keep]
    lse = np.log(np.exp(x).sum(axis=1))
    labels = np.eye(3)[[1, 0, 2]] * (1 - e) + e / 4
    close(got, (labels * (lse[:, None] - x)).sum(axis=1), tol)


def test_a_kept_minus_inf_class_with_smoothing_is_inf(backend: Backend) -> None:
    to, out, _ = setup(backend)
    x = np.array([[0.5, 1.5, -np.inf]])
    assert out(sparse(labels=[1], logits=to(x), label_smoothing=0.1))[0] == np.inf
    assert np.isfinite(out(sparse(labels=[1], logits=to(x), label_smoothing=0.1,
                                  where=np.isfinite(x)))[0])


@pytest.mark.parametrize("function", ["dense", "sparse", "softmax", "log_softmax"])
def test_options_never_modify_their_inputs(backend: Backend, function: str) -> None:
    to, out, _ = setup(backend)
    arrays = dict(x=X.copy(), y=one_hot(np.array([1, 0, 3]), 4, 1), w=ROWS.copy(),
                  cw=CW.copy(), mask=np.isfinite(X) & (X < 3))
    before = {k: v.copy() for k, v in arrays.items()}
    tensors = {k: to(v) for k, v in arrays.items()}
    tensors_before = {k: out(v).copy() for k, v in tensors.items()}
    for given_as in (arrays, tensors):
        x = tensors["x"]
        if function == "dense":
            dense(labels=given_as["y"], logits=x, weights=given_as["w"],
                  class_weights=given_as["cw"], where=given_as["mask"], label_smoothing=0.1)
        elif function == "sparse":
            sparse(labels=[1, -100, 3], logits=x, weights=given_as["w"], ignore_index=-100,
                   class_weights=given_as["cw"], where=given_as["mask"], label_smoothing=0.1)
        else:
            getattr(xent, function)(x, where=given_as["mask"])
    for k, v in before.items():
        np.testing.assert_array_equal(arrays[k], v)
        np.testing.assert_array_equal(out(tensors[k]), tensors_before[k])


# -- gradients (autodiff backends, every mode) -------------------------------------------------
def test_ignored_rows_and_excluded_classes_get_gradient_0(autodiff_target: Any) -> None:
    x = X.copy()
    x[1] = np.nan  # ignored: never read
    x[0, 2] = np.nan  # excluded: never read
    keep = np.ones_like(X, bool)
    keep[0, 2] = False
    combos = [dict(), dict(label_smoothing=0.2), dict(class_weights=CW, weights=ROWS)]
    for extra, reduction in itertools.product(combos, ("sum", "mean", "weighted_mean")):
        def loss(labels: Any, logits: Any, extra: dict[str, Any] = extra,
                 reduction: str = reduction) -> Any:
            return sparse(labels=labels, logits=logits, ignore_index=-100, where=keep,
                          reduction=reduction, **extra)

        value, _, grad = autodiff_target.value_and_grad(loss, INDEX, x.astype(np.float32))
        assert np.isfinite(value).all(), (extra, reduction)
        assert (grad[1] == 0).all() and grad[0, 2] == 0, (extra, reduction)
        assert np.isfinite(grad).all(), (extra, reduction)


def test_dense_gradients_are_the_derivatives_of_the_formula(autodiff_target: Any) -> None:
    """d/dlogits and d/dlabels of the summed loss with every option, against the formula
    differentiated by hand (float64 NumPy)."""
    rng = np.random.default_rng(3)
    y = rng.uniform(0, 1, X.shape)
    keep = np.array([True, False, True, True])
    e = 0.3

    def loss(labels: Any, logits: Any) -> Any:
        return dense(labels=labels, logits=logits, weights=ROWS, class_weights=CW,
                     label_smoothing=e, where=keep, reduction="sum")

    value, dlabels, dlogits = autodiff_target.value_and_grad(loss, y.astype(np.float32),
                                                             X.astype(np.float32))
    u = np.where(keep, (1 - e) * y + e / 4, 0) * CW  # effective labels
    x = np.where(keep, X, -np.inf)
    lse = np.log(np.exp(x).sum(axis=1, keepdims=True))
    p = np.exp(x - lse)
    np.testing.assert_allclose(value, (ROWS * (u * np.where(keep, lse - x, 0)).sum(1)).sum(),
                               rtol=1e-5)
    np.testing.assert_allclose(dlogits, ROWS[:, None] * (p * u.sum(1, keepdims=True) - u),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        dlabels, np.where(keep, ROWS[:, None] * CW * (1 - e) * (lse - np.where(keep, X, 0)), 0),
        rtol=1e-5, atol=1e-6)
