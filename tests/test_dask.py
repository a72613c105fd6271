"""The Dask backend: lazy dask arrays, the class axis in one chunk or several.

Every result is compared with the NumPy backend on the same (unsharded) values: the four
functions, each option and reduction, dtypes, labels as dask or NumPy, a class chunk that is
all ``-inf``, NaN and infinite rows, out-of-range labels (NaN rows), relative accuracy. Then
the conformance catalog's Dask modes (``threads``, ``split``, ``distributed``, on a subset:
``DaskBackend.mode_cases``), and the README's example, on the threaded scheduler and on a
``LocalCluster`` (2 worker processes) started once for this module.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import xent
from xent.conformance import cases, report, runner

dense = xent.softmax_cross_entropy_with_logits
sparse = xent.sparse_softmax_cross_entropy_with_logits
NUMPY = xent.backends.get("numpy")
DASK = xent.backends.get("dask")
#: chunks of the class axis: whole, split in 3 uneven chunks, one class per chunk
CLASS_CHUNKS = {"whole": -1, "split": 4, "single": 1}


@pytest.fixture(scope="module")
def client() -> Any:
    """A LocalCluster of 2 worker processes (1 thread each) for this module."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(autouse=True)
def threads() -> Any:
    """Tests compute on the threaded scheduler unless they pass a client."""
    with dask.config.set(scheduler="threads"):
        yield


def lazy(a: np.ndarray, axis: int, class_chunks: str) -> Any:
    """``a`` as a dask array: two chunks along every axis but ``axis``, which is chunked as
    :data:`CLASS_CHUNKS` says."""
    chunks = [max(1, (n + 1) // 2) for n in a.shape]
    chunks[axis] = CLASS_CHUNKS[class_chunks]
    return da.from_array(a, chunks=tuple(chunks))


def problem(shape: tuple[int, ...], axis: int, dtype: str = "float64", scale: float = 10.0,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, soft labels, sparse labels)."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * scale).astype(dtype)
    y = rng.random(shape).astype(dtype)
    s = rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1:])
    return x, y, s


def close(got: Any, want: np.ndarray, rtol: float = 4e-15) -> None:
    assert isinstance(got, da.Array), type(got)
    value = got.compute()
    assert value.dtype == np.asarray(want).dtype and value.shape == np.shape(want)
    np.testing.assert_allclose(value.astype(np.float64), np.asarray(want, np.float64),
                               rtol=rtol, atol=0)


# -- dispatch, laziness, errors --------------------------------------------------------------
def test_import_xent_and_numpy_calls_do_not_import_dask() -> None:
    code = ("import sys, xent\nxent.sparse_softmax_cross_entropy_with_logits(labels=[1], "
            "logits=[[1., 2.]])\nxent.backends.available()\nprint('dask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "False"
    assert "dask" in xent.backends.available()


def test_an_xent_call_computes_nothing() -> None:
    computed = []

    def block(b: np.ndarray) -> np.ndarray:
        computed.append(b.shape)
        return b

    x = lazy(np.zeros((4, 6)), 1, "split").map_blocks(block)
    computed.clear()  # map_blocks itself called block on empty arrays, for their dtype
    s, y = da.zeros(4, dtype=int, chunks=2), da.zeros((4, 6), chunks=2)
    results = [xent.softmax(x), xent.log_softmax(x, where=[True] * 5 + [False]),
               dense(labels=y, logits=x, reduction="weighted_mean", label_smoothing=0.1,
                     class_weights=np.ones(6), weights=np.ones(4)),
               sparse(labels=s, logits=x, ignore_index=0, label_smoothing=0.1, reduction="mean")]
    assert all(isinstance(r, da.Array) for r in results)
    assert computed == []
    dask.compute(*results)
    assert computed


def test_results_are_dask_arrays_of_the_logits_dtype_and_shape() -> None:
    x, y, s = problem((4, 6), 1, "float32")
    logits = lazy(x, 1, "split")
    assert xent.softmax(logits).dtype == np.float32
    loss = sparse(labels=s, logits=logits)
    assert loss.shape == (4,) and loss.dtype == np.float32
    assert sparse(labels=s, logits=logits, reduction="sum").shape == ()
    with pytest.raises(TypeError, match="backend: 'numpy' was requested but logits is a dask"):
        xent.softmax(logits, backend="numpy")
    assert isinstance(xent.softmax(x, backend="dask"), da.Array)  # NumPy input, on dask


def test_unknown_chunk_sizes_are_a_clear_error() -> None:
    x = da.from_array(np.ones((6, 4)), chunks=3)
    unknown = x[x[:, 0] > 0]
    assert np.isnan(unknown.shape[0])
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes"):
        xent.softmax(unknown)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        sparse(labels=da.zeros(6, dtype=int, chunks=3)[x[:, 0] > 0], logits=x)


# -- values: equal to the NumPy backend -----------------------------------------------------
SHAPES = [((7, 10), 1), ((7, 10), 0), ((3, 10, 4), 1), ((10,), 0)]


@pytest.mark.parametrize("class_chunks", CLASS_CHUNKS)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=[f"{s}-{a}" for s, a in SHAPES])
def test_values_equal_numpy(shape: tuple[int, ...], axis: int, class_chunks: str) -> None:
    x, y, s = problem(shape, axis)
    logits, labels = lazy(x, axis, class_chunks), lazy(y, axis, class_chunks)
    close(xent.softmax(logits, axis), xent.softmax(x, axis))
    close(xent.log_softmax(logits, axis), xent.log_softmax(x, axis))
    want = dense(labels=y, logits=x, axis=axis)
    close(dense(labels=labels, logits=logits, axis=axis), want)
    close(dense(labels=y, logits=logits, axis=axis), want)  # NumPy labels
    want = sparse(labels=s, logits=x, axis=axis)
    close(sparse(labels=s, logits=logits, axis=axis), want)
    if s.ndim:  # dask labels chunked unlike the logits
        close(sparse(labels=da.from_array(s, chunks=1), logits=logits, axis=axis), want)
    for reduction in ("sum", "mean"):
        close(sparse(labels=s, logits=logits, axis=axis, reduction=reduction),
              sparse(labels=s, logits=x, axis=axis, reduction=reduction))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_is_computed_in_float32(dtype: str) -> None:
    x, y, s = problem((6, 9), 1, "float32")
    if dtype == "bfloat16":
        import ml_dtypes

        x, y = x.astype(ml_dtypes.bfloat16), y.astype(ml_dtypes.bfloat16)
    else:
        x, y = x.astype(dtype), y.astype(dtype)
    logits, labels = lazy(x, 1, "split"), lazy(y, 1, "split")
    rtol = {"float32": 1e-6}.get(dtype, 1e-2)
    close(xent.log_softmax(logits), xent.log_softmax(x), rtol)
    close(dense(labels=labels, logits=logits), dense(labels=y, logits=x), rtol)
    close(sparse(labels=s, logits=logits, reduction="mean"),
          sparse(labels=s, logits=x, reduction="mean"), rtol)


def test_a_class_chunk_of_minus_inf() -> None:
    """Classes 4-7 masked (-inf) in every row: a whole chunk. Zero labels there: finite, as
    unsharded; a label there: +inf (its true value); every class -inf: NaN."""
    x, y, s = problem((5, 12), 1)
    x[:, 4:8] = -np.inf
    y[:, 4:8] = 0.0
    y[1, 5] = 0.5
    x[2] = -np.inf
    logits = lazy(x, 1, "split")
    for got, want in [(dense(labels=lazy(y, 1, "split"), logits=logits), dense(labels=y, logits=x)),
                      (sparse(labels=s, logits=logits), sparse(labels=s, logits=x)),
                      (xent.softmax(logits), xent.softmax(x)),
                      (xent.log_softmax(logits), xent.log_softmax(x))]:
        value = got.compute()
        np.testing.assert_allclose(value, want, rtol=4e-15)  # NaN and inf where NumPy has them
    loss = dense(labels=y, logits=x)
    assert np.isposinf(loss[1]) and np.isnan(loss[2]) and np.isfinite(loss[[0, 3, 4]]).all()


def test_nan_and_infinite_rows() -> None:
    x, y, s = problem((4, 9), 1)
    x[0, 5], x[1, 7], x[2, :] = np.nan, np.inf, -np.inf
    logits, labels = lazy(x, 1, "split"), lazy(y, 1, "split")
    for got in (dense(labels=labels, logits=logits), sparse(labels=s, logits=logits),
                xent.softmax(logits)[:, 0], xent.log_softmax(logits)[:, 3]):
        value = got.compute()
        assert np.isnan(value[:3]).all() and np.isfinite(value[3])


def test_out_of_range_labels_give_nan_rows() -> None:
    x, _, s = problem((6, 9), 1)
    s[1], s[4] = 9, -1
    for class_chunks in CLASS_CHUNKS:
        logits = lazy(x, 1, class_chunks)
        loss = sparse(labels=s, logits=logits).compute()
        assert np.isnan(loss[[1, 4]]).all()
        good = [0, 2, 3, 5]
        np.testing.assert_allclose(loss[good], sparse(labels=s[good], logits=x[good]), rtol=4e-15)
        with_options = sparse(labels=s, logits=logits, label_smoothing=0.1, ignore_index=-1)
        assert np.isnan(with_options.compute()[1]) and with_options.compute()[4] == 0


def test_confident_rows_keep_relative_accuracy() -> None:
    """The row maximum alone in its chunk, the other classes far below: the loss is
    ``log1p(11 exp(-30))``, below eps, exact to a few eps of itself (not of 1)."""
    x = np.zeros((2, 12))
    x[0, 0], x[1, 11] = 30.0, 30.0
    exact = np.log1p(11 * np.exp(-30.0))
    for class_chunks in CLASS_CHUNKS:
        logits = lazy(x, 1, class_chunks)
        np.testing.assert_allclose(sparse(labels=[0, 11], logits=logits).compute(), exact,
                                   rtol=4e-16)
        np.testing.assert_allclose(xent.log_softmax(logits).compute()[[0, 1], [0, 11]],
                                   -exact, rtol=4e-16)


# -- options ------------------------------------------------------------------------------------
OPTIONS: list[dict[str, Any]] = [
    {"ignore_index": -100, "label_smoothing": 0.1},  # the language-model combination
    {"ignore_index": 3},
    {"class_weights": "cw", "ignore_index": -100},
    {"label_smoothing": 0.25, "class_weights": "cw", "weights": "w"},
    {"where": "mask", "label_smoothing": 0.2},
    {"where": "mask", "class_weights": "cw", "weights": "w", "label_smoothing": 0.5,
     "ignore_index": -100},
]


def _options(spec: dict[str, Any], rng: np.random.Generator, dask_arrays: bool
             ) -> dict[str, Any]:
    mask = np.ones(10, bool)
    mask[[2, 7]] = False
    arrays = {"cw": rng.random(10) + 0.5, "w": rng.random(7) + 0.5, "mask": mask}
    out = {}
    for k, v in spec.items():
        value = arrays.get(v, v) if isinstance(v, str) else v
        if dask_arrays and isinstance(value, np.ndarray):
            value = da.from_array(value, chunks=3)
        out[k] = value
    return out


@pytest.mark.parametrize("class_chunks", ["whole", "split"])
@pytest.mark.parametrize("spec", OPTIONS, ids=["-".join(o) for o in OPTIONS])
def test_options_equal_numpy(spec: dict[str, Any], class_chunks: str) -> None:
    x, y, s = problem((7, 10), 1, scale=3.0)
    s[[1, 5]] = spec.get("ignore_index", 0)
    x[1] = np.nan  # an ignored row is never read
    if "ignore_index" not in spec:
        x[1] = 0.0
    logits, labels = lazy(x, 1, class_chunks), lazy(y, 1, class_chunks)
    rng = np.random.default_rng(1)
    opt, dask_opt = _options(spec, rng, False), _options(spec, np.random.default_rng(1), True)
    dense_opt = {k: v for k, v in opt.items() if k != "ignore_index"}
    dense_dask = {k: v for k, v in dask_opt.items() if k != "ignore_index"}
    for reduction in ("none", "sum", "mean", "weighted_mean"):
        close(sparse(labels=s, logits=logits, reduction=reduction, **dask_opt),
              sparse(labels=s, logits=x, reduction=reduction, **opt), 4e-15)
        if "ignore_index" not in spec:
            close(dense(labels=labels, logits=logits, reduction=reduction, **dense_dask),
                  dense(labels=y, logits=x, reduction=reduction, **dense_opt), 4e-15)
    if "where" in spec:
        close(xent.log_softmax(logits, where=opt["where"]), xent.log_softmax(x, where=opt["where"]))


# -- the conformance catalog, and dask.distributed -------------------------------------------
CELLS = [(mode, name, dtype) for mode, names in DASK.mode_cases.items()
         for name in names for dtype in DASK.mode_dtypes[mode]]


@pytest.mark.parametrize("mode,name,dtype", CELLS, ids=["-".join(c) for c in CELLS])
def test_conformance(mode: str, name: str, dtype: str, request: pytest.FixtureRequest) -> None:
    if mode == "distributed":
        request.getfixturevalue("client")
    records = runner.evaluate(name, dtype, DASK, mode).records
    failed = [r for r in records if r.passed is False]
    assert not failed, "\n" + report.failures(failed)
    assert any(r.passed for r in records)


def test_distributed_equals_numpy(client: Any) -> None:
    x, y, s = problem((6, 9), 1)
    s[2] = -100
    logits, labels = lazy(x, 1, "split"), lazy(y, 1, "split")
    lm = {"ignore_index": -100, "label_smoothing": 0.1}
    results = client.compute([
        xent.softmax(logits), xent.log_softmax(lazy(x, 1, "whole")),
        dense(labels=labels, logits=logits, class_weights=np.ones(9)),
        sparse(labels=s, logits=logits, reduction="mean", **lm)], sync=True)
    wants = [xent.softmax(x), xent.log_softmax(x),
             dense(labels=y, logits=x, class_weights=np.ones(9)),
             sparse(labels=s, logits=x, reduction="mean", **lm)]
    for got, want in zip(results, wants):
        np.testing.assert_allclose(got, want, rtol=4e-15)


def readme_example() -> str:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    found = re.search(r"^### Dask\n.*?```python\n(.*?)```", text, re.S | re.M)
    assert found, "README: no python example under ### Dask"
    return found.group(1)


def test_readme_example(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    exec(readme_example(), {})  # the threaded scheduler (this module's autouse fixture)
    with dask.config.set(scheduler=client):
        exec(readme_example(), {})  # the LocalCluster
    out = capsys.readouterr().out.split()
    assert out[0] == out[2] == "Array" and out[1] == out[3]


def test_conformance_subset_names_real_cases() -> None:
    assert set(DASK.mode_cases) == set(DASK.modes + DASK.transform_modes)
    for names in DASK.mode_cases.values():
        assert set(names) <= set(cases.case_names())
