"""The TensorFlow backend in its three ways of running: TF2 eager, ``tf.function``, TF1 graph
+ ``Session``. Values and gradients against analytic formulas and the NumPy reference, the
masked-class fix, NaN rows, out-of-range labels, conversion and dispatch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import requested_backends

if "tensorflow" not in requested_backends():
    pytest.skip("tensorflow is not in XENT_TEST_BACKENDS", allow_module_level=True)

import tensorflow as tf  # noqa: E402

import xent  # noqa: E402
from xent.compat.v1 import nn as v1  # noqa: E402

TF = xent.backends.get("tensorflow")
NB = xent.backends.get("numpy")
MODES = TF.modes
INF, NAN = float("inf"), float("nan")
DTYPES = ("float16", "bfloat16", "float32", "float64")
# float16/bfloat16 round the float32 result once; float32 differs from the reference's
# summation order by a few eps.
RTOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 4e-6, "float64": 1e-13}
LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _dense(y: Any, x: Any) -> Any:
    return xent.softmax_cross_entropy_with_logits(labels=y, logits=x)


def _sparse(y: Any, x: Any) -> Any:
    return xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)


def _v1(y: Any, x: Any) -> Any:
    return v1.softmax_cross_entropy_with_logits(labels=y, logits=x)


def _analytic(labels: np.ndarray, logits: np.ndarray, axis: int = -1) -> tuple[np.ndarray, ...]:
    """float64 loss, d/dlabels = lse - x, d/dlogits = softmax * sum(labels) - labels."""
    x, y = logits.astype(np.float64), labels.astype(np.float64)
    m = x.max(axis, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis, keepdims=True))
    with np.errstate(invalid="ignore"):
        loss = np.where(y == 0, 0.0, y * (lse - x)).sum(axis)
    return loss, lse - x, np.exp(x - lse) * y.sum(axis, keepdims=True) - y


def _f32(*arrays: np.ndarray) -> list[np.ndarray]:
    return [a.astype(np.float32) for a in arrays]


# -- the three ways of running --------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_worked_example_values_and_gradients(mode: str) -> None:
    y, x = _f32(LABELS, LOGITS)
    np.testing.assert_allclose(TF.run(mode, _dense, y, x), [0.4790107, 1.19967598], rtol=1e-6)
    value, dlabels, dlogits = TF.value_and_grad(mode, _dense, y, x)
    loss, want_dlabels, want_dlogits = _analytic(y, x)
    np.testing.assert_allclose(value, loss, rtol=1e-6)
    np.testing.assert_allclose(dlabels, want_dlabels, rtol=1e-6)
    np.testing.assert_allclose(dlogits, want_dlogits, rtol=1e-5, atol=1e-7)
    value, none, sparse_dlogits = TF.value_and_grad(mode, _sparse, np.array([1, 2]), x)
    assert none is None  # integer labels have no gradient
    np.testing.assert_allclose(value, loss, rtol=1e-6)
    np.testing.assert_allclose(sparse_dlogits, want_dlogits, rtol=1e-5, atol=1e-7)


def test_tf1_graph_with_placeholders_of_unknown_batch_and_gradients() -> None:
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3])
        y = tf.compat.v1.placeholder(tf.float32, [None, 3])
        k = tf.compat.v1.placeholder(tf.int64, [None])
        loss = _dense(y, x)
        sparse = _sparse(k, x)
        mean = xent.softmax_cross_entropy_with_logits(labels=y, logits=x, reduction="mean")
        assert all(tf.is_symbolic_tensor(t) for t in (loss, sparse, mean))
        assert loss.shape.as_list() == sparse.shape.as_list() == [None]
        assert mean.shape.as_list() == []
        dx, dy = tf.compat.v1.gradients(tf.reduce_sum(loss), [x, y])
        (dsx,) = tf.compat.v1.gradients(tf.reduce_sum(sparse), [x])
        assert tf.compat.v1.gradients(_v1(y, x), [y]) == [None]  # TF1: no label gradient
        with tf.compat.v1.Session(graph=graph) as session:
            for batch in (2, 5):
                logits = np.random.default_rng(batch).normal(size=(batch, 3)).astype(np.float32)
                index = np.arange(batch) % 3
                labels = np.eye(3, dtype=np.float32)[index]
                out = session.run([loss, sparse, mean, dx, dy, dsx],
                                  {x: logits, y: labels, k: index})
                want, want_dy, want_dx = _analytic(labels, logits)
                for got, ref in zip(out, [want, want, want.mean(), want_dx, want_dy, want_dx]):
                    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_tf1_graph_with_an_unknown_class_dimension() -> None:
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, None])
        k = tf.compat.v1.placeholder(tf.int32, [None])
        outs = [_sparse(k, x), xent.softmax(x), xent.log_softmax(x),
                _dense(tf.one_hot(tf.math.floormod(k, tf.shape(x)[1]), tf.shape(x)[1]), x)]
        with tf.compat.v1.Session(graph=graph) as session:
            loss, p, log_p, dense = session.run(outs, {x: LOGITS, k: [1, 3]})
    assert np.isnan(loss[1])  # label 3 of 3 classes: NaN while tracing
    np.testing.assert_allclose(loss[0], 0.4790107, rtol=1e-6)
    np.testing.assert_allclose(dense, _analytic(np.eye(3)[[1, 0]], LOGITS)[0], rtol=1e-6)
    np.testing.assert_allclose(p, NB.softmax(LOGITS, 1), rtol=1e-6)
    np.testing.assert_allclose(log_p, NB.log_softmax(LOGITS, 1), rtol=1e-6)


def test_tf_function_with_an_unknown_batch_dimension() -> None:
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None, 3], tf.float32)])
    def loss_and_grad(k: tf.Tensor, x: tf.Tensor) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _sparse(k, x)
            total = tf.reduce_sum(loss)
        return loss, tape.gradient(total, x)

    x = LOGITS.astype(np.float32)
    loss, grad = loss_and_grad(tf.constant([1, 7], tf.int64), tf.constant(x))
    assert np.isnan(loss[1]) and np.isfinite(loss[0])  # out of range: NaN while tracing
    np.testing.assert_allclose(grad[0], _analytic(LABELS, x)[2][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(grad[1], 0)  # no gradient from a NaN-by-contract row


def test_inside_an_xla_compiled_function() -> None:
    @tf.function(jit_compile=True)
    def loss_and_grad(y: tf.Tensor, k: tf.Tensor, x: tf.Tensor) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _dense(y, x)
            total = tf.reduce_sum(loss)
        return loss, _sparse(k, x), tape.gradient(total, x)

    y, x = _f32(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), np.array([[0.5, 1.5, -INF],
                                                                        [2.2, 1.3, 1.7]]))
    loss, sparse, grad = loss_and_grad(tf.constant(y), tf.constant([1, 3]), tf.constant(x))
    want, _, want_grad = _analytic(y, x)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert sparse.numpy()[0] == pytest.approx(want[0]) and np.isnan(sparse.numpy()[1])
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


def test_a_process_with_eager_execution_disabled() -> None:
    code = textwrap.dedent("""
        import numpy as np, tensorflow as tf, xent
        from xent.compat.v1 import nn
        tf.compat.v1.disable_eager_execution()
        x = tf.compat.v1.placeholder(tf.float32, [None, 3])
        y = tf.compat.v1.placeholder(tf.float32, [None, 3])
        k = tf.compat.v1.placeholder(tf.int64, [None])
        loss = xent.softmax_cross_entropy_with_logits(labels=y, logits=x)
        sparse = xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x)
        dx, dy = tf.compat.v1.gradients(tf.reduce_sum(loss), [x, y])
        assert tf.compat.v1.gradients(nn.softmax_cross_entropy_with_logits(
            labels=y, logits=x), [y]) == [None]
        with tf.compat.v1.Session() as session:
            out = session.run([loss, sparse, dx, dy], {
                x: [[0.5, 1.5, -np.inf], [2.2, 1.3, 1.7]],
                y: [[0, 1, 0], [0, 0, 1]], k: [1, 3]})
        print(repr([v.tolist() for v in out]))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loss, sparse, dx, dy = eval(result.stdout.strip().splitlines()[-1], {"nan": NAN, "inf": INF})
    np.testing.assert_allclose(loss, [0.3132617, 1.19967598], rtol=1e-6)
    assert sparse[0] == pytest.approx(0.3132617) and np.isnan(sparse[1])  # label 3: NaN
    assert np.isfinite(dx).all() and dy[0][2] == INF


# -- semantics ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_masked_class_value_and_gradients(mode: str) -> None:
    y, x = _f32(np.array([[0.0, 1.0, 0.0]]), np.array([[0.5, 1.5, -INF]]))
    value, dlabels, dlogits = TF.value_and_grad(mode, _dense, y, x)
    np.testing.assert_allclose(value, [0.3132617], rtol=1e-6)
    lse = np.log(np.exp(0.5) + np.exp(1.5))
    np.testing.assert_allclose(dlabels, [[lse - 0.5, lse - 1.5, INF]], rtol=1e-6)
    p = np.exp(np.array([0.5, 1.5]) - lse)
    np.testing.assert_allclose(dlogits, [[p[0], p[1] - 1.0, 0.0]], rtol=1e-6)
    sparse_value, _, sparse_dlogits = TF.value_and_grad(mode, _sparse, np.array([1]), x)
    np.testing.assert_allclose(sparse_value, [0.3132617], rtol=1e-6)
    np.testing.assert_allclose(sparse_dlogits, dlogits, rtol=1e-6)


def test_tf_itself_gives_nan_for_the_masked_class() -> None:
    # Why the fix exists: TF's fused kernel computes 0 * -inf there.
    native = tf.nn.softmax_cross_entropy_with_logits(
        labels=[[0.0, 1.0, 0.0]], logits=[[0.5, 1.5, -INF]])
    assert np.isnan(native.numpy()[0])


def test_masked_class_with_a_nonzero_label_is_inf() -> None:
    out = _dense(tf.constant([[0.0, 0.5, 0.5]]), tf.constant([[0.5, 1.5, -INF]]))
    assert out.numpy()[0] == INF
    assert _sparse(tf.constant([2]), tf.constant([[0.5, 1.5, -INF]])).numpy()[0] == INF


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", ["nan", "+inf", "all -inf"])
def test_a_bad_row_is_nan_and_only_that_row(mode: str, bad: str) -> None:
    # 1000 classes: the vectorised paths of TF's reductions, not only a scalar tail
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 1000)).astype(np.float32)
    x[2] = {"nan": x[2], "+inf": x[2], "all -inf": -INF}[bad]
    if bad != "all -inf":
        x[2, 517] = NAN if bad == "nan" else INF
    index = np.array([3, 600, 5, 999])
    y = np.eye(1000, dtype=np.float32)[index]
    y[2] = 0.0  # all-zero labels do not hide a bad row either
    for fn, args in [(_dense, (y, x)), (_sparse, (index, x)),
                     (lambda a: xent.softmax(a), (x,)), (lambda a: xent.log_softmax(a), (x,))]:
        out = TF.run(mode, fn, *args)
        assert np.isnan(out[2]).all()
        assert np.isfinite(np.delete(out, 2, axis=0)).all()
    _, _, dlogits = TF.value_and_grad(mode, _dense, y, x)
    assert np.isfinite(np.delete(dlogits, 2, axis=0)).all()


def test_softmax_of_a_row_with_nan_or_inf_is_all_nan() -> None:
    # TF's softmax kernel has left part of such a row finite (xent's softmax does not rely
    # on the kernel for this); on some CPUs it gives all NaN itself
    x = tf.constant([[0.5, INF, 1.0], [NAN, 1.0, 2.0], [-INF, -INF, -INF]])
    assert np.isnan(xent.softmax(x).numpy()).all()


def test_confident_rows_are_accurate_to_a_few_eps_relative() -> None:
    x = np.full((1, 10), -11.0, np.float32)
    x[0, 3] = 10.0
    exact = np.log1p(9 * np.exp(-21.0))  # ~6.8e-9, far below float32 eps
    y = np.eye(10, dtype=np.float32)[[3]]
    for mode in MODES:
        for got in (TF.run(mode, _dense, y, x), TF.run(mode, _sparse, np.array([3]), x),
                    -TF.run(mode, lambda a: xent.log_softmax(a), x)[:, 3]):
            np.testing.assert_allclose(got, [exact], rtol=1e-6)
    native = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)
    assert native.numpy()[0] == 0.0  # TF's kernel rounds it away


@pytest.mark.parametrize("mode", MODES)
def test_unnormalised_soft_and_zero_labels(mode: str) -> None:
    y = np.array([[0.5, 2.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 0.0]], np.float32)
    x = np.array([[0.5, 1.5, -INF], [2.2, 1.3, 1.7], [1.0, 2.0, 3.0]], np.float32)
    value, dlabels, dlogits = TF.value_and_grad(mode, _dense, y, x)
    loss, want_dlabels, want_dlogits = _analytic(y, x)
    np.testing.assert_allclose(value, loss, rtol=1e-6)
    np.testing.assert_allclose(dlabels, want_dlabels, rtol=1e-6)
    np.testing.assert_allclose(dlogits, want_dlogits, rtol=1e-5, atol=1e-7)
    assert value[2] == 0.0 and not dlogits[2].any()


@pytest.mark.parametrize("mode", MODES)
def test_label_gradient_flows_in_xent_and_stops_in_compat_v1(mode: str) -> None:
    y, x = _f32(LABELS, LOGITS)
    _, dlabels, dlogits = TF.value_and_grad(mode, _dense, y, x)
    np.testing.assert_allclose(dlabels, _analytic(y, x)[1], rtol=1e-6)
    _, v1_dlabels, v1_dlogits = TF.value_and_grad(mode, _v1, y, x)
    assert v1_dlabels is None or not np.any(v1_dlabels)
    np.testing.assert_allclose(v1_dlogits, dlogits, rtol=1e-6)


def test_label_gradient_with_a_tape_in_eager() -> None:
    y, x = tf.constant(LABELS, tf.float32), tf.Variable(LOGITS, dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        ours, old = _dense(y, x), _v1(y, x)
    assert tape.gradient(old, y) is None
    np.testing.assert_allclose(tape.gradient(ours, y), _analytic(LABELS, LOGITS)[1], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, x), tape.gradient(old, x), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_values_match_the_numpy_reference(dtype: str, axis: int) -> None:
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(3, 4, 5)) * 3).astype(dtype)
    y = rng.random((3, 4, 5)).astype(dtype)
    index = rng.integers(0, x.shape[axis], np.delete(x.shape, axis))

    def every_function(labels: Any, index: Any, logits: Any) -> list[Any]:
        return [
            xent.softmax(logits, axis),
            xent.log_softmax(logits, axis),
            xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis),
            xent.sparse_softmax_cross_entropy_with_logits(labels=index, logits=logits,
                                                          axis=axis),
        ]

    ours = every_function(tf.constant(y), tf.constant(index), tf.constant(x))
    for got, ref in zip(ours, every_function(y, index, x)):
        assert got.dtype.name == dtype
        np.testing.assert_allclose(TF.to_numpy(got).astype(np.float64),
                                   np.asarray(ref, np.float64), rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * 1e-2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_any_axis_values_and_gradients(mode: str, axis: int) -> None:
    rng = np.random.default_rng(axis)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    index = rng.integers(0, x.shape[axis], np.delete(x.shape, axis))
    y = np.moveaxis(np.eye(x.shape[axis], dtype=np.float32)[index], -1, axis)

    def dense(a: Any, b: Any) -> Any:
        return xent.softmax_cross_entropy_with_logits(labels=a, logits=b, axis=axis)

    def sparse(a: Any, b: Any) -> Any:
        return xent.sparse_softmax_cross_entropy_with_logits(labels=a, logits=b, axis=axis)

    loss, want_dlabels, want_dlogits = _analytic(y, x, axis)
    value, dlabels, dlogits = TF.value_and_grad(mode, dense, y, x)
    sparse_value, _, sparse_dlogits = TF.value_and_grad(mode, sparse, index, x)
    for got, want in [(value, loss), (sparse_value, loss), (dlabels, want_dlabels),
                      (dlogits, want_dlogits), (sparse_dlogits, want_dlogits)]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_rank_one_logits_and_a_scalar_label() -> None:
    x = tf.constant([0.5, 1.5, 0.1])
    assert _sparse(tf.constant(1), x).shape == ()
    np.testing.assert_allclose(_sparse(tf.constant(1), x).numpy(), 0.4790107, rtol=1e-6)
    np.testing.assert_allclose(_dense(tf.constant([0.0, 1.0, 0.0]), x).numpy(), 0.4790107,
                               rtol=1e-6)


# -- dtypes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_in_every_dtype_come_back_in_it(mode: str, dtype: str) -> None:
    y, x = LABELS.astype(dtype), LOGITS.astype(dtype)
    value, dlabels, dlogits = TF.value_and_grad(mode, _dense, y, x)
    assert value.dtype == dlabels.dtype == dlogits.dtype == x.dtype
    loss, want_dlabels, want_dlogits = _analytic(y, x)
    for got, want in [(value, loss), (dlabels, want_dlabels), (dlogits, want_dlogits)]:
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=RTOL[dtype] * 2,
                                   atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: tf.DType) -> None:
    x32 = tf.constant([[1000.0, 1000.5, 999.0], [-3.0, 4.0, 0.25]])
    x = tf.cast(x32, dtype)
    y = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype)
    want = _dense(tf.cast(y, tf.float32), tf.cast(x, tf.float32))
    np.testing.assert_array_equal(_dense(y, x).numpy(), tf.cast(want, dtype).numpy())


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reductions_accumulate_half_precision_in_float32(reduction: str) -> None:
    x = tf.constant(np.tile([[0.5, 1.5, 0.1]], (4096, 1)), tf.float16)
    loss = xent.sparse_softmax_cross_entropy_with_logits(
        labels=np.ones(4096, np.int64), logits=x, reduction=reduction)
    assert loss.dtype == tf.float16 and loss.shape == ()
    want = 0.4790107 * (4096 if reduction == "sum" else 1)
    np.testing.assert_allclose(float(loss.numpy()), want, rtol=1e-3)


def test_mean_of_no_rows_is_nan() -> None:
    x = tf.zeros([0, 3])
    assert np.isnan(xent.sparse_softmax_cross_entropy_with_logits(
        labels=tf.zeros([0], tf.int64), logits=x, reduction="mean").numpy())
    assert xent.softmax_cross_entropy_with_logits(
        labels=tf.zeros([0, 3]), logits=x, reduction="sum").numpy() == 0


# -- sparse labels --------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_sparse_equals_dense_one_hot(axis: int) -> None:
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(6, 7)) * 4, tf.float32)
    index = tf.constant(rng.integers(0, 7 if axis != 0 else 6, 7 if axis == 0 else 6))
    one_hot = tf.one_hot(index, x.shape[axis], axis=axis)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        s = xent.sparse_softmax_cross_entropy_with_logits(labels=index, logits=x, axis=axis)
        d = xent.softmax_cross_entropy_with_logits(labels=one_hot, logits=x, axis=axis)
    np.testing.assert_allclose(s.numpy(), d.numpy(), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(s, x), tape.gradient(d, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad", [3, -1])
def test_out_of_range_label_is_a_value_error_in_eager(bad: int) -> None:
    with pytest.raises(ValueError, match=rf"{bad}.*\[0, 3\)"):
        _sparse(tf.constant([1, bad]), tf.constant(LOGITS))
    with pytest.raises(ValueError, match=rf"{bad}"):
        _sparse([1, bad], tf.constant(LOGITS))


@pytest.mark.parametrize("mode", ["function", "graph"])
@pytest.mark.parametrize("bad", [3, -1, 2**40])
def test_out_of_range_label_is_nan_while_tracing(mode: str, bad: int) -> None:
    assert mode in TF.tracing_modes
    out = TF.run(mode, _sparse, np.array([1, bad, 0]), np.tile(LOGITS[:1], (3, 1)))
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64",
                                   "uint8", "uint16", "uint32", "uint64"])
def test_every_integer_label_dtype(dtype: str) -> None:
    labels = np.array([1, 2], dtype)
    for mode in MODES:
        np.testing.assert_allclose(TF.run(mode, _sparse, labels, LOGITS),
                                   [0.4790107, 1.19967598], rtol=1e-6)
    with pytest.raises(ValueError, match="3"):
        _sparse(tf.constant(np.array([1, 3], dtype)), tf.constant(LOGITS))


# -- conversion and dispatch ----------------------------------------------------------------
def test_results_stay_native_eager_tensors() -> None:
    x = tf.constant(LOGITS, tf.float32)
    results = [xent.softmax(x), xent.log_softmax(x), _dense(LABELS, x), _sparse([1, 2], x),
               xent.softmax_cross_entropy_with_logits(labels=LABELS, logits=x, reduction="sum")]
    for result, shape in zip(results, [(2, 3), (2, 3), (2,), (2,), ()]):
        assert isinstance(result, tf.Tensor) and not tf.is_symbolic_tensor(result)
        assert result.dtype == tf.float32 and tuple(result.shape) == shape


def test_numpy_and_list_labels_are_converted_to_the_logits_framework() -> None:
    x = tf.constant(LOGITS, tf.float32)
    for labels in (LABELS, LABELS.tolist()):
        out = _dense(labels, x)
        assert isinstance(out, tf.Tensor) and out.dtype == tf.float32
        np.testing.assert_allclose(out.numpy(), [0.4790107, 1.19967598], rtol=1e-6)
    np.testing.assert_allclose(_sparse(np.array([1, 2]), x).numpy(), [0.4790107, 1.19967598],
                               rtol=1e-6)


def test_variables_are_owned_and_differentiated() -> None:
    x = tf.Variable(LOGITS, dtype=tf.float32)
    y = tf.Variable(LABELS, dtype=tf.float32)
    assert TF.owns(x) and TF.owns(y) and TF.owns(tf.constant(1.0))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(_dense(y, x))
    dx, dy = tape.gradient(loss, [x, y])
    _, want_dy, want_dx = _analytic(LABELS, LOGITS)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dy, want_dy, rtol=1e-6)


def test_tensorflow_with_torch_is_a_type_error_naming_both() -> None:
    torch = pytest.importorskip("torch", reason="the mixed-framework case needs torch")
    if "torch" not in xent.backends.available():
        pytest.skip("the torch backend is not available")
    for labels, logits in [(torch.tensor(LABELS), tf.constant(LOGITS)),
                           (tf.constant(LABELS), torch.tensor(LOGITS))]:
        with pytest.raises(TypeError, match=r"(?=.*torch)(?=.*tensorflow)"):
            _dense(labels, logits)


def test_explicit_backend_must_match_a_tensorflow_tensor() -> None:
    with pytest.raises(TypeError, match="tensorflow"):
        xent.softmax(tf.constant(LOGITS), backend="numpy")
    assert isinstance(xent.softmax(LOGITS, backend="tensorflow"), tf.Tensor)


def test_conversion_helpers() -> None:
    assert TF.asarray([1.5], dtype="bfloat16").dtype == tf.bfloat16
    assert TF.asarray(np.array([1, 2]), like=tf.constant([1.0])).dtype == tf.int64
    assert TF.asarray([[1, 0]], like=tf.constant([[1.0, 2.0]]), dtype="float16").dtype == tf.float16
    x = tf.constant([1.0, 2.0])
    assert TF.cast(x, "float32") is x and TF.cast(x, "float64").dtype == tf.float64
    assert [TF.dtype_name(tf.zeros([1], d)) for d in (tf.float16, tf.bfloat16, tf.uint8, tf.bool)
            ] == ["float16", "bfloat16", "uint8", "bool"]
    assert TF.first_out_of_range(tf.constant([0, 2, -4, 9]), 3) == -4
    assert TF.first_out_of_range(tf.constant([0, 2]), 3) is None
    np.testing.assert_array_equal(TF.to_numpy(x), [1.0, 2.0])
    with tf.Graph().as_default():
        p = tf.compat.v1.placeholder(tf.int64, [None, 2])
        assert TF.shape(p) == (None, 2)
        assert TF.first_out_of_range(p, 3) is None  # symbolic: never read
        assert TF.shape(tf.compat.v1.placeholder(tf.float32)) is None  # unknown rank


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "int8",
                                   "int32", "int64", "uint8", "bool", "complex64", "string"])
def test_shape_and_dtype_reads_equal_tfs_public_ones(dtype: str) -> None:
    """Eager tensors are read through private attributes (``shape._dims``,
    ``_datatype_enum()``): the answers are TF's public ones, in every dtype and rank, read
    again (cached) and for variables and graph tensors (the public reads)."""
    from xent.backends import _tensorflow

    assert _tensorflow._EAGER is not None, "this TF's eager tensors lost the private reads"
    for shape in ([], [0], [2, 3], [1, 0, 4]):
        x = tf.zeros(shape, dtype)
        for _ in range(2):
            assert TF.shape(x) == tuple(x.shape.as_list())
            assert type(TF.shape(x)) is tuple
            assert TF.dtype_name(x) == x.dtype.name
    variable = tf.Variable(tf.zeros([2, 1], dtype))
    assert (TF.shape(variable), TF.dtype_name(variable)) == ((2, 1), variable.dtype.name)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], dtype)])
    def traced(x: tf.Tensor) -> tf.Tensor:
        assert (TF.shape(x), TF.dtype_name(x)) == ((None, 3), x.dtype.name)
        return x

    traced.get_concrete_function()


def test_run_hook_round_trips_numpy_in_every_mode() -> None:
    for mode in MODES:
        out = TF.run(mode, lambda a, b: a * tf.cast(b, a.dtype), LOGITS, np.array([1, 2, 3]))
        assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(out, LOGITS * [1, 2, 3])
    with pytest.raises(ValueError, match="mode"):
        TF.run("jit", _dense, LABELS, LOGITS)


def test_a_tensorflow_call_imports_neither_torch_nor_jax(tmp_path: Path) -> None:
    # `import tensorflow` itself imports jax when it is installed (tf.lite probes for it);
    # what xent must not add is any module of torch or jax, or their xent backends.
    # The first call is traced: autograph must not convert xent (it warned about dispatch's
    # imports, whose source it cannot read). A file, not -c: autograph reads the source.
    script = tmp_path / "first_call_traced.py"
    script.write_text(textwrap.dedent("""
        import sys
        import tensorflow as tf
        before = set(sys.modules)
        import xent
        from xent.compat.v1 import nn

        @tf.function
        def first(x):
            return xent.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0]], logits=x)

        first(tf.constant([[1.0, 2.0]]))
        x = tf.constant([[0.5, 1.5, 0.1]])
        xent.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0, 0.0]], logits=x)
        xent.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=x)
        nn.softmax_cross_entropy_with_logits(labels=tf.constant([[0.0, 1.0, 0.0]]), logits=x)
        xent.softmax(x), xent.log_softmax(x)
        added = sorted(m for m in set(sys.modules) - before
                       if m.split(".")[0] in ("torch", "jax", "jaxlib")
                       or m in ("xent.backends._torch", "xent.backends._jax"))
        assert not added, added
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "AutoGraph" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("shape", [(2, 3), (2, 4, 3), (0, 3)])
def test_eager_reductions_equal_tfs_own_with_gradients(reduction: str, shape: tuple) -> None:
    """Eagerly, the reduction runs TF's own Sum/Mean op with cached axes (no reduce_* Python):
    the same value and gradient as ``tf.reduce_*`` of the per-row losses, on tape and in
    forward mode, also for an empty batch (mean NaN, sum 0), also right after a trace."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal(shape))
    k = tf.constant(rng.integers(0, 3, shape[:-1]))
    native = tf.reduce_sum if reduction == "sum" else tf.reduce_mean
    tf.function(lambda x: xent.sparse_softmax_cross_entropy_with_logits(
        labels=k, logits=x, reduction=reduction))(x)  # a trace first: the axes stay eager
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got = xent.sparse_softmax_cross_entropy_with_logits(
            labels=k, logits=x, reduction=reduction)
        want = native(xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x))
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(tape.gradient(got, x).numpy(), tape.gradient(want, x).numpy())
    tangent = tf.ones_like(x)
    with tf.autodiff.ForwardAccumulator(x, tangent) as acc:
        got = xent.sparse_softmax_cross_entropy_with_logits(
            labels=k, logits=x, reduction=reduction)
    with tf.autodiff.ForwardAccumulator(x, tangent) as acc_native:
        want = native(xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x))
    np.testing.assert_allclose(acc.jvp(got).numpy(), acc_native.jvp(want).numpy(), rtol=1e-12)
