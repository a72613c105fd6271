"""Properties that hold for any input, checked with hypothesis on every backend (eager)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xent
from xent.backends import Backend

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def problems(draw, max_rank: int = 3):  # type: ignore[no-untyped-def]
    """(logits, soft labels, sparse labels, axis) with finite logits up to +-50."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_rank, min_side=1, max_side=6))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    logits = draw(hnp.arrays(np.float64, shape, elements=st.floats(-50, 50)))
    labels = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
    reduced = shape[: axis % len(shape)] + shape[axis % len(shape) + 1:]
    index = draw(hnp.arrays(np.int64, reduced, elements=st.integers(0, shape[axis] - 1)))
    return logits, labels, index, axis


def setup(backend: Backend):  # type: ignore[no-untyped-def]
    # float64 where the framework gives it (JAX only with jax_enable_x64), else float32.
    probe = backend.asarray(np.zeros(1), dtype="float64")
    dtype = "float64" if backend.dtype_name(probe) == "float64" else "float32"
    tol = 1e-10 if dtype == "float64" else 2e-4

    def to(a: np.ndarray) -> object:
        return backend.asarray(a, dtype=dtype if a.dtype.kind == "f" else None)

    return to, backend.to_numpy, tol


@SETTINGS
@given(problems(), st.floats(-100, 100))
def test_shift_invariance(backend: Backend, problem, shift: float) -> None:  # type: ignore[no-untyped-def]
    logits, labels, _, axis = problem
    to, out, tol = setup(backend)
    shifted = logits + shift
    a = out(xent.softmax_cross_entropy_with_logits(labels=to(labels), logits=to(logits), axis=axis))
    b = out(xent.softmax_cross_entropy_with_logits(labels=to(labels), logits=to(shifted),
                                                   axis=axis))
    scale = 1 + np.abs(labels).sum(axis=axis) * (np.abs(logits).max() + abs(shift) + 10)
    assert (np.abs(a - b) <= tol * scale).all()
    np.testing.assert_allclose(out(xent.softmax(to(shifted), axis)),
                               out(xent.softmax(to(logits), axis)), atol=tol * 200)


@SETTINGS
@given(problems())
def test_sparse_equals_dense_one_hot(backend: Backend, problem) -> None:  # type: ignore[no-untyped-def]
    logits, _, index, axis = problem
    to, out, tol = setup(backend)
    classes = logits.shape[axis]
    one_hot = np.moveaxis(np.eye(classes)[index], -1, axis)
    sparse = out(xent.sparse_softmax_cross_entropy_with_logits(labels=to(index), logits=to(logits),
                                                               axis=axis))
    dense = out(xent.softmax_cross_entropy_with_logits(labels=to(one_hot), logits=to(logits),
                                                       axis=axis))
    np.testing.assert_allclose(sparse, dense, rtol=tol, atol=tol * 100)


@SETTINGS
@given(problems())
def test_axis_k_equals_moveaxis(backend: Backend, problem) -> None:  # type: ignore[no-untyped-def]
    logits, labels, index, axis = problem
    to, out, tol = setup(backend)
    moved_x, moved_y = np.moveaxis(logits, axis, -1), np.moveaxis(labels, axis, -1)
    for f in (xent.softmax, xent.log_softmax):
        np.testing.assert_allclose(out(f(to(logits), axis)),
                                   np.moveaxis(out(f(to(moved_x), -1)), -1, axis),
                                   rtol=tol, atol=tol * 100)
    np.testing.assert_allclose(
        out(xent.softmax_cross_entropy_with_logits(labels=to(labels), logits=to(logits),
                                                   axis=axis)),
        out(xent.softmax_cross_entropy_with_logits(labels=to(moved_y), logits=to(moved_x))),
        rtol=tol, atol=tol * 100)


@SETTINGS
@given(problems(max_rank=2), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_rows_are_independent(backend: Backend, problem, poison: float) -> None:  # type: ignore[no-untyped-def]
    """Spoiling one row (NaN, +inf, or a whole row of -inf) changes that row only."""
    logits, labels, index, axis = problem
    to, out, tol = setup(backend)
    x = np.moveaxis(logits, axis, -1).reshape(-1, logits.shape[axis]).copy()
    y = np.moveaxis(labels, axis, -1).reshape(x.shape)
    before = out(xent.softmax_cross_entropy_with_logits(labels=to(y), logits=to(x)))
    x[0] = poison if poison == -np.inf else x[0]
    x[0, 0] = poison
    after = out(xent.softmax_cross_entropy_with_logits(labels=to(y), logits=to(x)))
    assert np.isnan(after[0])
    np.testing.assert_array_equal(after[1:], before[1:])
    sm = out(xent.softmax(to(x)))
    assert np.isnan(sm[0]).all() and np.isfinite(sm[1:]).all()
