"""The NumPy backend's fused option kernels against the generic composition.

``_numpy_fused`` folds the loss options into the row kernels' passes; ``xent._options``
composes the same formula from the plain kernels and NumPy array operations (the meaning of
the options, proven by the conformance suite). Both must agree on every combination of
options, on rows that exercise each rule of DESIGN section 6: NaN rows, NaN / +inf / -inf
logits at excluded classes, kept -inf logits (with and without smoothing), a label on an
excluded class, rows whose maximum is excluded, ignored NaN rows, a zero class weight at a
-inf logit; in every dtype, with the class axis last or inside, tiled and threaded.
"""

from __future__ import annotations

import itertools
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from exact import loss_rows, relative_error_in_eps

import xent
from xent import _options
from xent.backends import _numpy_fused, _numpy_tiles

NUMPY = xent.backends.get("numpy")
DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
LAYOUTS = [((41, 37), -1), ((7, 9, 13), 1), ((13, 3000), -1)]  # 3000: blocked BLAS dots
IGNORE = -100


def _rows_to(a: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """``[rows, C]`` (or ``[rows]``) as ``shape`` with the classes on ``axis``."""
    moved = np.moveaxis(np.empty(shape), axis, -1).shape
    if a.ndim == 1:
        return a.reshape(moved[:-1])
    return np.moveaxis(a.reshape(moved), -1, axis)


def problem(shape: tuple[int, ...], axis: int, seed: int = 0) -> dict[str, Any]:
    """Logits, labels and options as ``[rows, C]`` arrays, special rows first."""
    rng = np.random.default_rng(seed)
    classes = shape[axis]
    n = int(np.prod(shape)) // classes
    x = rng.normal(scale=3.0, size=(n, classes))
    mask = rng.random((n, classes)) < 0.8
    index = rng.integers(0, classes, n)
    y = rng.random((n, classes)) * (rng.random((n, classes)) < 0.7)
    y[1:] /= y[1:].sum(axis=1, keepdims=True) + 1e-3  # soft labels; row 0 unnormalised
    cw = rng.uniform(0.5, 2.0, classes)
    c0, c1, c2 = 0, 1, 2
    mask[:, c2] = True  # every row keeps a class
    x[0, c2] = np.nan  # a NaN at a kept class: NaN in that row
    x[1, c0], mask[1, c0] = np.nan, False  # NaN where excluded: never read
    x[2, c1], mask[2, c1], y[2, c1] = -np.inf, False, 0.0  # -inf where excluded
    x[3], mask[3, c0], index[3] = rng.normal(size=classes), False, c2  # excluded maximum,
    x[3, c0], x[3, c2] = 60.0, 30.0  # confident on the kept one: lse~ - m < 0
    mask[4], mask[4, c2] = False, True  # one class left
    x[5, c1], mask[5, c1] = np.inf, False  # +inf where excluded
    x[6], index[6] = np.nan, IGNORE  # ignored, with NaN logits
    mask[7, c1], index[7] = False, c1  # the label on an excluded class adds 0
    x[8, c0], mask[8, c0], y[8, c0] = -np.inf, True, 0.0  # kept -inf: +inf when smoothed
    x[9, c1], cw[c1], index[9] = -np.inf, 0.0, c1  # a zero class weight at -inf
    x[10, c2] = np.inf  # a kept +inf: NaN
    index[11] = IGNORE
    weights = rng.uniform(0.0, 2.0, n)
    weights[12] = 0.0
    return dict(x=x, mask=mask, index=index, y=y, cw=cw, weights=weights)


def reference(kind: str, labels: np.ndarray, x: np.ndarray, axis: int,
              options: dict[str, Any]) -> np.ndarray:
    """``_options.sparse_rows`` / ``dense_rows`` with NumPy ops, on float64 copies."""
    e = options.get("label_smoothing", 0.0)
    axis %= x.ndim
    opt = _options.Options(
        weights=options.get("weights"), class_weights=options.get("class_weights"),
        label_smoothing=e, smooths=e != 0, where=options.get("where"),
        ignore_index=options.get("ignore_index"), num_classes=x.shape[axis])
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if kind == "sparse":
            return _options.sparse_rows(NUMPY, labels, x, axis, opt)
        return _options.dense_rows(NUMPY, labels.astype(np.float64), x, axis, opt)


def combinations(kind: str, p: dict[str, Any], shape: tuple[int, ...], axis: int):
    """Every subset of the options (``where`` as a full mask and as one shared row)."""
    classes = shape[axis]
    row_shape = [1] * len(shape)
    row_shape[axis] = classes
    wheres = {"full": _rows_to(p["mask"], shape, axis),
              "row": np.arange(classes).reshape(row_shape) != 1}
    choices = [("weights", [None, _rows_to(p["weights"], shape, axis)]),
               ("class_weights", [None, p["cw"]]),
               ("label_smoothing", [None, 0.1]),
               ("where", [None, *wheres.values()])]
    if kind == "sparse":
        choices.append(("ignore_index", [None, IGNORE]))
    for values in itertools.product(*(v for _, v in choices)):
        yield {name: v for (name, _), v in zip(choices, values) if v is not None}


def assert_agree(got: np.ndarray, expected: np.ndarray, dtype: Any, what: str) -> None:
    eps = float(ml_dtypes.finfo(dtype).eps)
    got = np.asarray(got, np.float64)
    with np.errstate(over="ignore"):
        expected = expected.astype(dtype).astype(np.float64)  # inf where dtype overflows
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=what)
    np.testing.assert_allclose(got, expected, rtol=8 * eps, atol=64 * eps, equal_nan=True,
                               err_msg=what)


@pytest.fixture(params=["one tile", "tiled, threaded"])
def tiling(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param != "one tile":
        monkeypatch.setattr(_numpy_tiles, "TILE_ELEMENTS", 300)
        monkeypatch.setattr(_numpy_tiles, "PARALLEL_MIN_ELEMENTS", 0)
        monkeypatch.setenv("XENT_NUM_THREADS", "2")
    return str(request.param)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: f"{s[0]}-axis{s[1]}")
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_fused_options_equal_the_generic_composition(kind, layout, dtype, tiling) -> None:  # type: ignore[no-untyped-def]
    shape, axis = layout
    p = problem(shape, axis)
    logits = _rows_to(p["x"], shape, axis).astype(dtype)
    if kind == "sparse":
        labels = _rows_to(p["index"], shape, axis)
        call = xent.sparse_softmax_cross_entropy_with_logits
    else:
        labels = _rows_to(p["y"], shape, axis).astype(dtype)
        call = xent.softmax_cross_entropy_with_logits
    loss_shape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    for options in combinations(kind, p, shape, axis):
        given = labels
        if kind == "sparse" and "ignore_index" not in options:
            given = np.where(labels == IGNORE, 0, labels)
        got = call(labels=given, logits=logits, axis=axis, **options)
        assert got.dtype == np.dtype(dtype) and got.shape == loss_shape
        expected = reference(kind, given, logits, axis, options)
        assert_agree(got, expected, dtype, f"{kind} {sorted(options)}")
        if "ignore_index" in options:
            assert (got[given == IGNORE] == 0).all()  # never read, even as NaN


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_full_smoothing_and_reductions(kind: str) -> None:
    """``label_smoothing=1`` (the labels do not matter) and every reduction."""
    shape, axis = (41, 37), -1
    p = problem(shape, axis, seed=1)
    labels = p["index"] if kind == "sparse" else p["y"]
    call = (xent.sparse_softmax_cross_entropy_with_logits if kind == "sparse"
            else xent.softmax_cross_entropy_with_logits)
    extra = {"ignore_index": IGNORE} if kind == "sparse" else {}
    for e, reduction in itertools.product((1.0, 0.5), ("none", "sum", "mean",
                                                       "weighted_mean")):
        options = dict(label_smoothing=e, where=p["mask"], class_weights=p["cw"],
                       weights=p["weights"], **extra)
        x = np.where(np.isfinite(p["x"]), p["x"], 0.0)  # a finite total
        got = call(labels=labels, logits=x.astype(np.float32), reduction=reduction,
                   **options)
        small = call(labels=labels, logits=x, reduction=reduction, **options)  # float64
        np.testing.assert_allclose(got, small, rtol=1e-5, err_msg=f"{e} {reduction}")
    options = dict(label_smoothing=1.0, where=p["mask"], **extra)
    per_row = call(labels=labels, logits=p["x"], **options)
    expected = reference(kind, labels, p["x"], -1, options)
    assert_agree(per_row, expected, np.float64, "e = 1")


@pytest.mark.parametrize("masked", [True, False], ids=["mask", "no mask"])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_ordinary_rows_take_the_fused_path(kind: str, masked: bool) -> None:
    """Finite logits with a random mask (or none), class weights and smoothing: no row falls
    back to the generic composition."""
    rng = np.random.default_rng(2)
    x = rng.normal(scale=4.0, size=(300, 500)).astype(np.float32)
    mask = (rng.random(x.shape) < 0.9).astype(np.float32) if masked else None
    p = _numpy_fused.plan(500, 0.1, rng.uniform(0.5, 2, 500), None, np.dtype(np.float32))
    if kind == "sparse":
        _, suspect = _numpy_fused.sparse_loss(rng.integers(0, 500, 300), x, mask, p)
    else:
        _, suspect = _numpy_fused.dense_loss(rng.random(x.shape, np.float32), x, mask, p)
    assert suspect is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_confident_rows_stay_relative_accurate_with_options(dtype) -> None:  # type: ignore[no-untyped-def]
    """Loss ~1e-9 with class weights and a mask, its maximum kept or excluded (the
    excluded one is recomputed exactly): a few eps of itself."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 300))
    x[:, 5] = x.max(axis=1) + 20.0  # the label, kept
    x[3:, 7] = x[3:, 5] + 25.0  # an excluded maximum above it (rows 3-5)
    mask = np.ones(x.shape, bool)
    mask[:, 7] = False
    x = x.astype(dtype)
    cw = np.full(300, 0.75)
    labels = np.full(6, 5)
    exact = [0.75 * v for v in loss_rows(np.eye(299)[[5] * 6], np.delete(x, 7, axis=1))]
    got = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x, where=mask,
                                                        class_weights=cw)
    assert relative_error_in_eps(got, exact, dtype) < 8
    got = xent.softmax_cross_entropy_with_logits(labels=np.eye(300)[labels].astype(dtype),
                                                 logits=x, where=mask, class_weights=cw)
    assert relative_error_in_eps(got, exact, dtype) < 8


def test_the_conformance_option_cases_pass_through_the_fused_kernels(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The catalog's inputs are tiny (Python floats, generic composition): run its option
    cases with the tiny path off, so that the fused kernels meet the exact reference too."""
    from xent.backends import _numpy_small
    from xent.conformance import cases, report, runner

    monkeypatch.setattr(_numpy_small, "MAX_ELEMENTS", 0)
    for name in [n for n in cases.case_names() if n.startswith("opt_")]:
        for dtype in cases.DTYPES:
            records = runner.evaluate(name, dtype, NUMPY, "eager").records
            failed = [r for r in records if r.passed is False]
            assert not failed, "\n" + report.failures(failed)
            assert any(r.passed for r in records), name


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_1024_x_128256_float32_with_every_option_runs_in_64_mib_extra(kind: str) -> None:
    """The fused kernels keep the backend's memory bound: a few tile-sized scratch arrays
    per thread, whatever the options (``where`` here is a full mask, the costliest)."""
    import gc
    import tracemalloc

    n, classes = 1024, 128256
    logits = np.empty((n, classes), np.float32)
    logits[:] = np.linspace(-8, 8, classes, dtype=np.float32)  # 525 MB
    where = np.ones((n, classes), bool)
    where[:, ::7] = False
    options = dict(weights=np.linspace(0.5, 1.5, n), class_weights=np.linspace(1, 2, classes),
                   label_smoothing=0.1, where=where)
    if kind == "dense":
        labels = np.full_like(logits, 1.0 / classes)

        def run():  # type: ignore[no-untyped-def]
            return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits,
                                                          **options)
    else:
        index = np.arange(n) * 101 + 1
        index[::3] = IGNORE

        def run():  # type: ignore[no-untyped-def]
            return xent.sparse_softmax_cross_entropy_with_logits(
                labels=index, logits=logits, ignore_index=IGNORE, **options)

    _numpy_tiles.release_scratch()  # count the scratch buffers the call allocates
    gc.collect()
    tracemalloc.start()
    try:
        loss = run()
        extra = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert extra <= 64, f"{kind}: {extra:.1f} MiB of extra peak memory"
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint64])
def test_every_integer_label_dtype_takes_the_kernels(dtype) -> None:  # type: ignore[no-untyped-def]
    """Labels of any integer dtype beyond the tiny path (uint64 + int64 offsets would
    promote to float64 indices), with and without options."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(9, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 9).astype(dtype)
    expected = [xent.sparse_softmax_cross_entropy_with_logits(labels=labels.astype(np.int64),
                                                              logits=x, **options)
                for options in ({}, dict(label_smoothing=0.1, where=x > -1))]
    got = [xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x, **options)
           for options in ({}, dict(label_smoothing=0.1, where=x > -1))]
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("padding", [0.1, 0.7])  # computed with the rows, or gathered out
def test_ignore_index_alone_is_the_call_without_the_ignored_rows(padding: float) -> None:
    """``ignore_index`` (and row weights) fold nothing into the rows: the kernel of a call
    without options runs, and the rows not ignored are that call's, bit for bit; an ignored
    row is 0, also with NaN logits."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 500)).astype(np.float32)
    t = rng.integers(0, 500, 3000)
    drop = rng.random(3000) < padding
    x[np.flatnonzero(drop)[:3]] = np.nan
    got = xent.sparse_softmax_cross_entropy_with_logits(
        labels=np.where(drop, IGNORE, t), logits=x, ignore_index=IGNORE)
    assert (got[drop] == 0).all()
    np.testing.assert_array_equal(
        got[~drop], xent.sparse_softmax_cross_entropy_with_logits(labels=t[~drop],
                                                                  logits=x[~drop]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_an_excluded_maximum_with_kept_mass_above_it_stays_in_the_fused_pass(dtype) -> None:  # type: ignore[no-untyped-def]
    """The row maximum excluded and ``s = sum_kept exp(x - m)`` at 1.5 and far above 1:
    ``r = log1p(s - 1)``, within a few eps of the exact loss on the kept classes, and no
    row recomputed (sparse, dense with and without class weights, smoothing or not)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 300))
    mask = np.ones(x.shape, bool)
    mask[:, 7] = False
    kept = np.delete(x, 7, axis=1)
    lse = np.log(np.exp(kept).sum(axis=1))
    x[:, 7] = lse - np.log([1.5, 1.5, 40.0, 1e4])  # s = 1.5, 1.5, 40, 1e4
    x = x.astype(dtype)
    labels = np.array([5, int(kept[1].argmax()), 9, 11])
    cws = {"none": None, "cw": np.linspace(0.5, 2.0, 300).astype(dtype)}
    for (name, cw), e in itertools.product(cws.items(), (0.0, 0.1)):
        p = _numpy_fused.plan(300, e, cw, None, np.dtype(dtype))
        k = mask.astype(dtype)
        y = np.eye(300, dtype=dtype)[labels]
        for kind, (loss, suspect) in (("sparse", _numpy_fused.sparse_loss(labels, x, k, p)),
                                      ("dense", _numpy_fused.dense_loss(y, x, k, p))):
            assert suspect is None, f"{kind} {name} e={e}"
            smooth = (1 - e) * np.delete(y, 7, axis=1).astype(np.float64) + e / 300
            w = np.ones(299) if cw is None else np.delete(cw, 7).astype(np.float64)
            exact = loss_rows(smooth * w, np.delete(x, 7, axis=1))
            assert relative_error_in_eps(loss, exact, dtype) < 8, f"{kind} {name} e={e}"
