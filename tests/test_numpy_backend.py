"""The NumPy reference backend: accuracy against an exact reference, tiling, memory."""

from __future__ import annotations

import gc
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
from exact import log_softmax_rows, loss_rows, relative_error_in_eps

import xent
from xent.backends import _numpy_small, _numpy_tiles

FLOATS = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
rng = np.random.default_rng(20261122)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(2, 3), (7, 40), (64, 1000)])
def test_loss_within_a_few_eps_relative_of_exact(shape, dtype) -> None:
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    labels = rng.random(shape).astype(dtype)
    loss = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    assert loss.dtype == np.dtype(dtype)
    # Half precision results are rounded once from float32: <= 0.5 eps + float32 error.
    assert relative_error_in_eps(loss, loss_rows(labels, logits), dtype) < 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("gap", [20.0, 30.0, 60.0])
@pytest.mark.parametrize("classes", [3, 1000])
def test_confident_predictions_are_accurate_relative(gap, classes, dtype) -> None:
    """Where the right class leads by 20, the loss is ~1e-8 * C: torch, TF and JAX return it
    with up to 100% error (log of a sum that rounds to 1); xent stays within a few eps.

    The bound grows as gap/4 eps: rounding ``x - m`` perturbs ``exp(x - m)`` by up to
    ``|x - m| * eps / 2`` relative, the problem's own condition number (seen: 14.6 eps at
    gap 60 in float64 with 3 classes; float32 with <= 64 elements runs in float64)."""
    logits = rng.standard_normal((4, classes)).astype(dtype)
    logits[:, 0] = logits.max(axis=1) + gap
    onehot = np.zeros_like(logits)
    onehot[:, 0] = 1
    exact = loss_rows(onehot, logits)
    for loss in (
        xent.softmax_cross_entropy_with_logits(labels=onehot, logits=logits),
        xent.sparse_softmax_cross_entropy_with_logits(labels=np.zeros(4, int), logits=logits),
    ):
        assert relative_error_in_eps(loss, exact, dtype) < 4 + gap / 4
    lsm = xent.log_softmax(logits)[:, :1]
    bound = 4 + gap / 4
    assert relative_error_in_eps(lsm, [r[0] for r in log_softmax_rows(logits)], dtype) < bound


def test_naive_formula_is_wrong_where_xent_is_right() -> None:
    """The measurement behind the accuracy goal: log(sum(exp)) loses the whole loss."""
    logits = np.array([[20.0, 0.0, 0.0]], np.float32)
    exact = float(loss_rows(np.array([[1.0, 0, 0]]), logits)[0])
    naive = np.log(np.exp(logits - 20).sum()) - 0.0
    assert naive == 0.0 and exact > 4e-9  # 100% error
    loss = xent.sparse_softmax_cross_entropy_with_logits(labels=[0], logits=logits)[0]
    assert abs(loss - exact) <= 2 * np.finfo(np.float32).eps * exact


def test_tiny_path_agrees_with_kernels(monkeypatch) -> None:
    """Inputs of <= 64 elements run in Python floats; the kernels must give the same."""
    logits = rng.standard_normal((5, 7)) * 3
    logits[1, 2] = -np.inf
    logits[2, 0] = np.nan
    logits[3, :] = -np.inf
    logits[4, 6] = np.inf
    labels = rng.random((5, 7))
    labels[1, 2] = 0
    index = rng.integers(0, 7, 5)
    calls = {
        "softmax": lambda: xent.softmax(logits),
        "log_softmax": lambda: xent.log_softmax(logits),
        "dense": lambda: xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits),
        "sparse": lambda: xent.sparse_softmax_cross_entropy_with_logits(labels=index,
                                                                        logits=logits),
    }
    tiny = {k: f() for k, f in calls.items()}
    monkeypatch.setattr(_numpy_small, "MAX_ELEMENTS", 0)
    for name, f in calls.items():
        np.testing.assert_allclose(f(), tiny[name], rtol=1e-14, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_tiled_threaded_path_matches_small_path(axis, monkeypatch) -> None:
    """Force many small tiles and two threads; results must not depend on the tiling."""
    logits = (rng.standard_normal((37, 23, 11)) * 4).astype(np.float32)
    labels = rng.random(logits.shape).astype(np.float64)  # cast block by block
    index = rng.integers(0, logits.shape[axis], np.delete(logits.shape, axis % 3))
    expected = [
        xent.softmax(logits, axis), xent.log_softmax(logits, axis),
        xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis),
        xent.sparse_softmax_cross_entropy_with_logits(labels=index, logits=logits, axis=axis),
    ]
    monkeypatch.setattr(_numpy_tiles, "TILE_ELEMENTS", 50)
    monkeypatch.setattr(_numpy_tiles, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("XENT_NUM_THREADS", "2")
    got = [
        xent.softmax(logits, axis), xent.log_softmax(logits, axis),
        xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis),
        xent.sparse_softmax_cross_entropy_with_logits(labels=index, logits=logits, axis=axis),
    ]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=1e-6)


def test_non_contiguous_and_subclass_inputs() -> None:
    base = rng.standard_normal((50, 80))
    logits = base.T[::2]  # strided view
    labels = rng.random(logits.shape)
    expected = xent.softmax_cross_entropy_with_logits(labels=labels.copy(),
                                                      logits=np.ascontiguousarray(logits))
    got = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_reductions_and_empty_batch() -> None:
    logits = rng.standard_normal((6, 4)).astype(np.float16)
    labels = rng.random((6, 4)).astype(np.float16)
    loss = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    total = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, reduction="sum")
    mean = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, reduction="mean")
    assert total.dtype == mean.dtype == np.float16
    assert float(total) == pytest.approx(float(loss.astype(np.float64).sum()), rel=1e-3)
    assert float(mean) == pytest.approx(float(loss.astype(np.float64).mean()), rel=1e-3)
    empty = np.zeros((0, 5), np.float32)
    assert xent.sparse_softmax_cross_entropy_with_logits(
        labels=np.zeros(0, int), logits=empty).shape == (0,)
    assert xent.softmax_cross_entropy_with_logits(labels=empty, logits=empty,
                                                  reduction="sum") == 0
    assert np.isnan(xent.softmax_cross_entropy_with_logits(labels=empty, logits=empty,
                                                           reduction="mean"))


def _peak_extra_mib(fn) -> float:  # type: ignore[no-untyped-def]
    _numpy_tiles.release_scratch()  # count the scratch buffers the call allocates
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("op", ["dense", "sparse", "log_softmax_rows"])
def test_1024_x_128256_float32_runs_in_64_mib_extra(op) -> None:
    logits = np.empty((1024, 128256), np.float32)
    logits[:] = np.linspace(-8, 8, 128256, dtype=np.float32)  # 525 MB
    if op == "dense":
        labels = np.full_like(logits, 1.0 / 128256)

        def run():  # type: ignore[no-untyped-def]
            return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    elif op == "sparse":
        index = np.arange(1024) * 101

        def run():  # type: ignore[no-untyped-def]
            return xent.sparse_softmax_cross_entropy_with_logits(labels=index, logits=logits)
    else:
        def run():  # type: ignore[no-untyped-def]
            return xent.log_softmax(logits[:100], axis=-1)  # its output is the input's size

    extra = _peak_extra_mib(run) - (100 * 128256 * 4 / 2**20 if op == "log_softmax_rows" else 0)
    assert extra <= 64, f"{op}: {extra:.1f} MiB of extra peak memory"
    assert np.isfinite(run()).all()


@pytest.mark.slow
def test_8192_x_128256_float32_runs() -> None:
    """4.2 GB of logits: fits on a 24 GiB machine because xent allocates no full-size temp."""
    logits = np.zeros((8192, 128256), np.float32)
    logits[:, 7] = 3.0
    loss = xent.sparse_softmax_cross_entropy_with_logits(labels=np.full(8192, 7), logits=logits,
                                                         reduction="mean")
    expected = np.log1p(128255 * np.exp(-3.0))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
