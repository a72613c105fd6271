"""The JAX backend: eager, jit, grad, jvp, vmap; dtypes; the masked-class fix and its
gradients; out-of-range labels; mixed input; agreement with the NumPy reference."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from functools import partial

import numpy as np
import pytest

if "jax" not in (os.environ.get("XENT_TEST_BACKENDS") or "jax").split(","):
    pytest.skip("jax is not in XENT_TEST_BACKENDS", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402

import xent  # noqa: E402
from xent.compat import v1, v2  # noqa: E402

JAX = xent.backends.get("jax")
NUMPY = xent.backends.get("numpy")
MODES = ("eager", "jit")

# The seed's worked example and a masked row (class 2 is impossible: logit -inf).
SEED_LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], np.float32)
SEED_LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
SEED_LOSS = np.array([0.4790107, 1.19967598])
MASKED_LOGITS = np.array([[0.5, 1.5, -np.inf]], np.float32)
MASKED_LABELS = np.array([[0.0, 1.0, 0.0]], np.float32)
MASKED_LOSS = 0.3132617
TOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 2e-6, "float64": 1e-12}


def dense(labels, logits, axis=-1):
    return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis)


def sparse(labels, logits, axis=-1):
    return xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis)


def in_mode(mode, fn):
    return jax.jit(fn) if mode == "jit" else fn


def lse(x, axis=-1):
    m = x.max(axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis, keepdims=True))


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# -- execution modes ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_seed_example(mode):
    out = in_mode(mode, dense)(jnp.asarray(SEED_LABELS), jnp.asarray(SEED_LOGITS))
    assert isinstance(out, jax.Array) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, SEED_LOSS, rtol=1e-6)
    out = in_mode(mode, sparse)(jnp.array([1, 2]), jnp.asarray(SEED_LOGITS))
    np.testing.assert_allclose(out, SEED_LOSS, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduction(mode, reduction):
    fn = in_mode(mode, lambda y, x: xent.softmax_cross_entropy_with_logits(
        labels=y, logits=x, reduction=reduction))
    out = fn(jnp.asarray(SEED_LABELS), jnp.asarray(SEED_LOGITS))
    assert out.shape == ()
    expected = SEED_LOSS.sum() if reduction == "sum" else SEED_LOSS.mean()
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_vmap_matches_batched_call():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 5, 6), np.float32)).at[:, 0, 2].set(-jnp.inf)
    y = jax.nn.softmax(jnp.asarray(rng.standard_normal((4, 5, 6), np.float32))).at[:, 0, 2].set(0)
    k = jnp.asarray(rng.integers(0, 6, (4, 5)))
    np.testing.assert_allclose(jax.vmap(dense)(y, x), dense(y, x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(sparse)(k, x), sparse(k, x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(xent.softmax)(x), xent.softmax(x), rtol=1e-6)
    # axis is the class axis of the unbatched slice, wherever the batch dimension is
    moved = jax.vmap(lambda y, x: dense(y, x, axis=0), in_axes=(1, 1))(y, x)
    np.testing.assert_allclose(moved, dense(y, x, axis=0), rtol=1e-6)  # (5, 6)
    grads = jax.vmap(jax.grad(lambda y, x: dense(y, x).sum(), argnums=(0, 1)))(y, x)
    direct = jax.grad(lambda y, x: dense(y, x).sum(), argnums=(0, 1))(y, x)
    for a, b in zip(grads, direct):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_tracers_dispatch_to_jax():
    seen = []

    def spy(x):
        seen.append((type(x).__name__, JAX.owns(x), xent._dispatch.owner(x) is JAX))
        return xent.log_softmax(x)

    jax.jit(spy)(jnp.ones(3))
    jax.vmap(spy)(jnp.ones((2, 3)))
    jax.grad(lambda x: spy(x).sum())(jnp.ones(3))
    jax.jvp(spy, (jnp.ones(3),), (jnp.ones(3),))
    assert len(seen) == 4 and all(owned and dispatched for _, owned, dispatched in seen), seen
    assert not JAX.owns(np.ones(3)) and not JAX.owns([1.0])


def test_no_host_transfer_for_dense_and_softmax():
    y, x, k = jnp.asarray(SEED_LABELS), jnp.asarray(SEED_LOGITS), jnp.array([1, 2])
    jax.block_until_ready((dense(y, x), jax.jit(dense)(y, x), xent.softmax(x),
                           jax.jit(sparse)(k, x)))  # compile
    with jax.transfer_guard("disallow"):
        jax.block_until_ready((dense(y, x), jax.jit(dense)(y, x), xent.softmax(x),
                               jax.jit(sparse)(k, x)))


# -- dtypes -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_dtype_in_dtype_out(mode, dtype):
    x, y = jnp.asarray(SEED_LOGITS, dtype), jnp.asarray(SEED_LABELS, dtype)
    for out in (in_mode(mode, dense)(y, x), in_mode(mode, sparse)(jnp.array([1, 2]), x),
                in_mode(mode, xent.softmax)(x), in_mode(mode, xent.log_softmax)(x)):
        assert out.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.asarray(dense(y, x), np.float32), SEED_LOSS, rtol=TOL[dtype])
    grad = jax.grad(lambda x: dense(y, x).sum())(x)
    assert grad.dtype == jnp.dtype(dtype)


def test_half_precision_is_computed_in_float32():
    # float16 logsumexp of 11 x 6e4 overflows in float16 itself; float32 inside does not
    x = jnp.full((1, 11), 6e4, jnp.float16)
    out = sparse(jnp.array([0]), x)
    np.testing.assert_allclose(np.float32(out[0]), np.log(11), rtol=2e-3)
    assert np.isfinite(np.asarray(xent.softmax(x), np.float32)).all()


def test_float64_with_x64():
    with jax.enable_x64(True):
        x = jnp.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], jnp.float64)
        out = jax.jit(dense)(jnp.asarray(SEED_LABELS, jnp.float64), x)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(out, [0.4790106967477104, 1.1996759812098481], rtol=1e-12)
        assert sparse(jnp.array([1, 2], jnp.int64), x).dtype == jnp.float64


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the default, x64 off")
def test_float64_is_float32_without_x64_as_everywhere_in_jax():
    assert JAX.dtypes == ("float16", "bfloat16", "float32", "float64")
    assert JAX.dtype_name(JAX.asarray(np.zeros(2), dtype="float64")) == "float32"
    with jax.enable_x64(True):
        assert JAX.dtype_name(JAX.asarray(np.zeros(2), dtype="float64")) == "float64"


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the hooks with x64 off")
def test_hooks_run_float64_without_global_x64():
    out = JAX.run("jit", dense, SEED_LABELS.astype(np.float64), SEED_LOGITS.astype(np.float64))
    assert out.dtype == np.float64
    value, dy, dx = JAX.value_and_grad("eager", dense, SEED_LABELS.astype(np.float64),
                                       SEED_LOGITS.astype(np.float64))
    assert value.dtype == dy.dtype == dx.dtype == np.float64
    assert not jax.config.jax_enable_x64  # enabled for the call only


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="checks the 32-bit default, x64 off")
def test_conversion_dtypes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert JAX.asarray(np.array([1, 2], np.int64)).dtype == jnp.int32
        assert JAX.asarray([1.0], dtype="float64").dtype == jnp.float32
        assert JAX.asarray([1.0], dtype="bfloat16").dtype == jnp.bfloat16
        x = jnp.ones(3, jnp.bfloat16)
        assert JAX.dtype_name(x) == "bfloat16"
        assert JAX.to_numpy(x).dtype == ml_dtypes.bfloat16
        assert JAX.cast(x, "bfloat16") is x
        assert sparse(np.array([1, 2], np.int64), jnp.asarray(SEED_LOGITS)).shape == (2,)


# -- semantics: masked classes, NaN and inf rows, sparse == dense ----------------------------
@pytest.mark.parametrize("mode", MODES)
def test_masked_class_value(mode):
    x, y = jnp.asarray(MASKED_LOGITS), jnp.asarray(MASKED_LABELS)
    assert np.isnan(-(y * jax.nn.log_softmax(x)).sum())  # the native formula
    np.testing.assert_allclose(in_mode(mode, dense)(y, x), [MASKED_LOSS], rtol=1e-6)
    np.testing.assert_allclose(in_mode(mode, sparse)(jnp.array([1]), x), [MASKED_LOSS], rtol=1e-6)
    # a label on the masked class: infinite loss; all-zero labels: exactly 0
    assert in_mode(mode, dense)(jnp.array([[0.0, 0.5, 0.5]]), x)[0] == np.inf
    assert in_mode(mode, dense)(jnp.zeros((1, 3)), x)[0] == 0
    assert in_mode(mode, sparse)(jnp.array([2]), x)[0] == np.inf


@pytest.mark.parametrize("mode", MODES)
def test_bad_rows_are_nan_and_only_those(mode):
    x = jnp.array([[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [-np.inf] * 3, [0.5, 1.5, 0.1]])
    y = jnp.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    for out in (in_mode(mode, dense)(y, x), in_mode(mode, dense)(jnp.zeros_like(y), x),
                in_mode(mode, sparse)(jnp.array([0, 0, 0, 1]), x)):
        assert np.isnan(out[:3]).all() and np.isfinite(out[3])
    for fn in (xent.softmax, xent.log_softmax):
        out = in_mode(mode, fn)(x)
        assert np.isnan(out[:3]).all() and np.isfinite(out[3]).all()


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_sparse_equals_dense_one_hot(axis):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, 7)).astype(np.float32)
    x[1, 2, 3] = x[0, 0, 0] = -np.inf
    k = np.moveaxis(np.argmax(np.moveaxis(x, axis, -1), -1), -1, -1)  # never a masked class
    one_hot = np.moveaxis(np.eye(x.shape[axis], dtype=np.float32)[k], -1, axis)
    np.testing.assert_allclose(sparse(jnp.asarray(k), jnp.asarray(x), axis),
                               dense(jnp.asarray(one_hot), jnp.asarray(x), axis), rtol=1e-6)
    g_sparse = jax.grad(lambda x: sparse(jnp.asarray(k), x, axis).sum())(jnp.asarray(x))
    g_dense = jax.grad(lambda x: dense(jnp.asarray(one_hot), x, axis).sum())(jnp.asarray(x))
    np.testing.assert_allclose(g_sparse, g_dense, atol=1e-6)


def test_moveaxis_equivalence():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 4, 5), np.float32))
    y = jax.nn.softmax(jnp.asarray(rng.standard_normal((3, 4, 5), np.float32)), axis=1)
    np.testing.assert_allclose(dense(y, x, axis=1),
                               dense(jnp.moveaxis(y, 1, -1), jnp.moveaxis(x, 1, -1)), rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_large_batches_fix_masked_rows_too(mode):
    # above _SMALL elements the plain fused formula runs first and a lax.cond fixes NaNs
    from xent.backends._jax_ops import SMALL as _SMALL

    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, _SMALL // 4)).astype(np.float32)
    y = np.zeros_like(x)
    y[np.arange(8), rng.integers(0, x.shape[1], 8)] = 1.0
    expected = NUMPY.softmax_cross_entropy_with_logits(y, x, 1)
    np.testing.assert_allclose(JAX.run(mode, dense, y, x), expected, rtol=1e-5)  # no NaN
    x[:, :5] = -np.inf  # masked classes everywhere
    y[:, :5] = 0.0
    y[1, 0] = 0.5  # a label on a masked class: +inf
    x[2, 7] = np.nan  # a NaN row
    expected = NUMPY.softmax_cross_entropy_with_logits(y, x, 1)
    assert np.isposinf(expected[1]) and np.isnan(expected[2])
    np.testing.assert_allclose(JAX.run(mode, dense, y, x), expected, rtol=1e-5)
    vmapped = JAX.run(mode, jax.vmap(dense), y, x)  # rows of _SMALL // 4: batched call
    np.testing.assert_allclose(vmapped, expected, rtol=1e-5)
    unbatched_labels = JAX.run(mode, jax.vmap(dense, in_axes=(None, 0)), y[0], x)
    np.testing.assert_allclose(unbatched_labels[0], expected[0], rtol=1e-5)
    _, dy, dx = JAX.value_and_grad(mode, dense, y, x)
    rows = [0, 1, 3]
    assert np.isfinite(dx[rows]).all() and np.isposinf(dy[rows][:, :5]).all()


# -- gradients ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_masked_gradients_match_formulas(mode):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 6)).astype(np.float32) * 3
    x[0, 1] = x[2, 5] = x[2, 0] = -np.inf
    y = rng.random((4, 6)).astype(np.float32) * 2  # unnormalised soft labels
    y[0, 1] = y[2, 5] = y[2, 0] = 0.0
    value, dy, dx = JAX.value_and_grad(mode, dense, y, x)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    np.testing.assert_allclose(dx, np_softmax(x64) * y64.sum(-1, keepdims=True) - y64,
                               atol=2e-6)
    np.testing.assert_allclose(dy, lse(x64) - x64, rtol=1e-5)  # +inf at masked classes
    assert np.isposinf(dy[0, 1]) and np.isposinf(dy[2, 5]) and np.isfinite(dx).all()
    np.testing.assert_allclose(value, (y64 * np.where(y64 == 0, 0, lse(x64) - x64)).sum(-1),
                               rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_sparse_gradient_and_integer_labels(mode):
    x = np.array([[0.5, 1.5, -np.inf], [2.2, 1.3, 1.7]], np.float32)
    value, dy, dx = JAX.value_and_grad(mode, sparse, np.array([1, 2]), x)
    assert dy is None
    np.testing.assert_allclose(value, [MASKED_LOSS, SEED_LOSS[1]], rtol=1e-6)
    np.testing.assert_allclose(dx, np_softmax(x.astype(np.float64)) - np.eye(3)[[1, 2]],
                               atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_label_gradient_tf2_vs_compat_v1(mode):
    def tf1(y, x):
        return v1.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)

    def tf2(y, x):
        return v2.nn.softmax_cross_entropy_with_logits(y, x)

    _, dy, dx = JAX.value_and_grad(mode, dense, SEED_LABELS, SEED_LOGITS)
    expected_dy = lse(SEED_LOGITS.astype(np.float64)) - SEED_LOGITS
    np.testing.assert_allclose(dy, expected_dy, rtol=1e-6)
    v, dy1, dx1 = JAX.value_and_grad(mode, tf1, SEED_LABELS, SEED_LOGITS)
    np.testing.assert_allclose(v, SEED_LOSS, rtol=1e-6)
    assert not np.any(dy1) and np.allclose(dx1, dx)  # TF1: no gradient into labels
    _, dy2, _ = JAX.value_and_grad(mode, tf2, SEED_LABELS, SEED_LOGITS)
    np.testing.assert_allclose(dy2, expected_dy, rtol=1e-6)


def test_forward_mode_and_hessian():
    x, y = jnp.asarray(MASKED_LOGITS[0]), jnp.asarray(MASKED_LABELS[0])
    tx = jnp.array([0.3, -0.2, 0.7], jnp.float32)
    value, tangent = jax.jvp(lambda x: dense(y, x), (x,), (tx,))
    p = np_softmax(MASKED_LOGITS[0].astype(np.float64))
    np.testing.assert_allclose(value, MASKED_LOSS, rtol=1e-6)
    np.testing.assert_allclose(tangent, ((p - MASKED_LABELS[0]) * tx).sum(), atol=1e-6)
    # label tangent: (lse - logits) . dlabels; a label that does not move contributes 0,
    # also at a masked class (lse - logits = +inf there), and +inf where it moves
    d = lse(SEED_LOGITS[0].astype(np.float64)) - SEED_LOGITS[0]
    ty = jnp.array([1.0, 2.0, 0.0], jnp.float32)
    _, t = jax.jvp(lambda y: dense(y, jnp.asarray(SEED_LOGITS[0])), (y,), (ty,))
    np.testing.assert_allclose(t, d[0] + 2 * d[1], rtol=1e-6)
    d = lse(MASKED_LOGITS[0].astype(np.float64)) - MASKED_LOGITS[0]
    _, t = jax.jvp(lambda y: dense(y, x), (y,), (ty,))
    np.testing.assert_allclose(t, d[0] + 2 * d[1], rtol=1e-6)
    _, t = jax.jvp(lambda y: dense(y, x), (y,), (ty.at[2].set(0.5),))
    assert t == np.inf
    hessian = jax.jit(jax.hessian(lambda x: dense(y, x)))(x)
    np.testing.assert_allclose(hessian, np.diag(p) - np.outer(p, p), atol=1e-6)


def test_gradient_finite_wherever_loss_finite():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 10)).astype(np.float32) * 30
    x[rng.random(x.shape) < 0.3] = -np.inf
    x[:, 0] = 0.0  # every row keeps one finite class
    y = np.where(np.isinf(x), 0, rng.random(x.shape)).astype(np.float32)
    value, dy, dx = JAX.value_and_grad("jit", dense, y, x)
    assert np.isfinite(value).all() and np.isfinite(dx).all()
    assert (np.isposinf(dy) == np.isinf(x)).all()


# -- sparse labels out of range -----------------------------------------------------------
def test_out_of_range_raises_eagerly():
    x = jnp.asarray(SEED_LOGITS)
    for bad in (3, -1):
        with pytest.raises(ValueError, match=rf"sparse label {bad} is out of range \[0, 3\)"):
            sparse(jnp.array([1, bad]), x)
    with pytest.raises(ValueError, match="label 7"):
        sparse([1, 7], x)  # a list converted to JAX
    with pytest.raises(ValueError, match="1099511627776"):  # int32 JAX would wrap it to 0
        sparse(np.array([1, 2**40]), x)
    k = jnp.array([3, 1])
    with pytest.raises(ValueError, match="label 3"):  # concrete labels closed over in jit
        jax.jit(lambda x: sparse(k, x))(x)


def test_out_of_range_is_nan_while_tracing():
    x = jnp.asarray(SEED_LOGITS)
    out = jax.jit(sparse)(jnp.array([[1, 3], [-1, 2]]).T[0:2, 0], x)  # labels (1, 3)
    assert np.isfinite(out[0]) and np.isnan(out[1])
    out = jax.jit(sparse)(jnp.array([-1, 2]), x)
    assert np.isnan(out[0]) and np.isfinite(out[1])
    assert np.isnan(jax.vmap(sparse)(jnp.array([5, 1]), x)[0])
    grad = jax.jit(jax.grad(lambda x, k: sparse(k, x).sum()))(x, jnp.array([1, 9]))
    assert np.isfinite(grad[0]).all() and np.isnan(grad[1]).all()
    assert JAX.first_out_of_range(jnp.array([0, 5]), 3) == 5
    with jax.enable_x64(True):  # int64 labels beyond int32: not wrapped to a valid class
        out = jax.jit(sparse)(jnp.array([2**32, 2**40, 1], jnp.int64), jnp.ones((3, 3)))
        assert np.isnan(out[:2]).all() and np.isfinite(out[2])
    out = jax.jit(sparse)(jnp.array([255, 1], jnp.uint8), x)  # unsigned
    assert np.isnan(out[0]) and np.isfinite(out[1])


def test_hooks_out_of_range():
    x = np.ones((2, 3), np.float32)
    out = JAX.run("jit", sparse, np.array([1, 3]), x)
    assert np.isfinite(out[0]) and np.isnan(out[1])
    with pytest.raises(ValueError, match="label 3"):
        JAX.run("eager", sparse, np.array([1, 3]), x)
    assert np.isnan(JAX.run("jit", sparse, np.array([1, 2**40]), x)[1])


# -- mixed input and imports --------------------------------------------------------------
def test_neutral_labels_follow_jax_logits():
    x = jnp.asarray(SEED_LOGITS, jnp.bfloat16)
    for labels in (SEED_LABELS, SEED_LABELS.tolist(), SEED_LABELS.astype(np.float64)):
        out = dense(labels, x)
        assert isinstance(out, jax.Array) and out.dtype == jnp.bfloat16
    assert isinstance(sparse([1, 2], x), jax.Array)
    assert isinstance(dense(SEED_LABELS, SEED_LOGITS.tolist()), np.ndarray)  # neutral: NumPy
    out = xent.softmax_cross_entropy_with_logits(labels=SEED_LABELS, logits=SEED_LOGITS,
                                                 backend="jax")
    assert isinstance(out, jax.Array)


def test_jax_and_torch_mixed_is_type_error():
    torch = pytest.importorskip("torch", reason="the mixed-framework check needs torch")
    with pytest.raises(TypeError, match=r"(?=.*torch)(?=.*jax)"):
        dense(torch.tensor(SEED_LABELS), jnp.asarray(SEED_LOGITS))
    with pytest.raises(TypeError, match=r"(?=.*torch)(?=.*jax)"):
        dense(jnp.asarray(SEED_LABELS), torch.tensor(SEED_LOGITS))


def test_jax_call_imports_neither_torch_nor_tensorflow():
    code = (
        "import sys, jax, jax.numpy as jnp, xent\n"
        "x = jnp.array([[0.5, 1.5, -jnp.inf]])\n"
        "xent.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0, 0.0]], logits=x)\n"
        "xent.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=x)\n"
        "jax.jit(jax.grad(lambda x: xent.log_softmax(x).sum()))(x)\n"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- agreement with the NumPy reference ---------------------------------------------------
def _cases(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x.flat[rng.integers(0, x.size, 4)] = -np.inf
    y = rng.random(shape).astype(np.float32)
    y[np.isinf(x)] = 0.0
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_matches_numpy_backend(mode, dtype, axis):
    np_dtype = np.dtype(dtype)
    x, y = _cases((3, 4, 5), np_dtype, seed=axis + 10)
    k = np.argmax(np.moveaxis(x.astype(np.float32), axis, -1), -1)
    tol = TOL[dtype]
    checks = [
        (lambda y, x: dense(y, x, axis), (y, x), dense(y, x, axis)),
        (lambda k, x: sparse(k, x, axis), (k, x), sparse(k, x, axis)),
        (lambda x: xent.softmax(x, axis), (x,), xent.softmax(x, axis)),
        (lambda x: xent.log_softmax(x, axis), (x,), xent.log_softmax(x, axis)),
    ]
    for fn, args, reference in checks:
        assert isinstance(reference, np.ndarray)  # NumPy input: the reference backend
        out = JAX.run(mode, fn, *args)
        assert out.dtype == reference.dtype == np_dtype
        np.testing.assert_allclose(out.astype(np.float64), reference.astype(np.float64),
                                   rtol=tol, atol=tol)


def test_ignored_rows_have_exact_zero_derivatives_of_every_order_and_mode() -> None:
    """``ignore_index`` without a select over the logits (``_sparse_ignoring_jit``): an
    ignored row with NaN logits still gets gradient, tangent and Hessian exactly 0, under
    ``jit``, ``vmap`` and ``checkpoint``; the other rows' derivatives are the plain loss's."""
    x = jnp.asarray([[0.5, 1.5, 0.1], [jnp.nan, 1.0, 2.0], [2.2, 1.3, 1.7]], jnp.float32)
    labels = jnp.asarray([1, -100, 2])
    cw = jnp.asarray([jnp.inf, 2.0, 1.5], jnp.float32)  # inf where an ignored row points

    def loss(x, class_weights=None):
        return xent.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=x, ignore_index=-100, class_weights=class_weights).sum()

    kept = jnp.asarray([0, 2])
    plain = lambda x: xent.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
        labels=labels[kept], logits=x).sum()  # x: the kept rows only
    for f in (loss, jax.jit(loss), jax.checkpoint(loss)):
        assert np.isfinite(float(f(x)))
        grad = jax.grad(f)(x)
        assert np.array_equal(grad[1], np.zeros(3)), grad
        np.testing.assert_allclose(grad[kept], jax.grad(plain)(x[kept]), rtol=1e-6)
        _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
        np.testing.assert_allclose(tangent, jax.jvp(plain, (x[kept],),
                                                    (jnp.ones_like(x[kept]),))[1], rtol=1e-6)
        hessian = jax.hessian(f)(x)
        assert np.array_equal(hessian[1], np.zeros((3, 3, 3)))
        assert np.array_equal(hessian[:, :, 1], np.zeros((3, 3, 3)))
    assert np.isfinite(float(loss(x, cw)))
    weighted = jax.grad(loss)(x, cw)
    assert np.array_equal(weighted[1], np.zeros(3)) and np.isfinite(np.asarray(weighted)).all()
    per_example = jax.vmap(jax.grad(loss))(jnp.stack([x, x]))
    assert np.array_equal(per_example[:, 1], np.zeros((2, 3)))


@pytest.mark.parametrize("e", [0.1, 1.0])
def test_sparse_smoothing_from_the_sparse_kernel_equals_dense_one_hot(e: float) -> None:
    """Sparse label smoothing without one-hot labels (``_jax_options._smoothed``): equal to
    the dense loss of smoothed one-hot labels, values and gradients, also at ``e = 1`` with
    the label's logit ``-inf`` (``+inf``, not NaN), with ignored NaN rows (gradient 0), and
    NaN for a label out of range under ``jit``."""
    x = jnp.asarray([[0.5, 1.5, 0.1], [2.2, -jnp.inf, 1.7], [jnp.nan, 0.0, 1.0],
                     [0.3, 0.2, 0.1]], jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    labels = jnp.asarray([1, 1, -100, 0])
    one_hot = jax.nn.one_hot(jnp.where(labels < 0, 0, labels), 3, dtype=x.dtype)

    def sparse(x):
        return xent.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=x, label_smoothing=e, ignore_index=-100)

    def dense(x):
        loss = xent.softmax_cross_entropy_with_logits(labels=one_hot, logits=x,
                                                      label_smoothing=e)
        return jnp.where(labels == -100, 0.0, loss)

    got, want = jax.jit(sparse)(x), dense(jnp.where((labels == -100)[:, None], 0.0, x))
    assert got[1] == jnp.inf and want[1] == jnp.inf and got[2] == 0
    np.testing.assert_allclose(got, want, rtol=1e-6)
    finite = jnp.asarray([0, 3])
    grad = jax.grad(lambda x: sparse(x)[finite].sum())(x)
    want_grad = jax.grad(lambda x: dense(x)[finite].sum())(x)
    np.testing.assert_allclose(grad[finite], want_grad[finite], rtol=1e-6, atol=1e-7)
    assert np.array_equal(grad[2], np.zeros(3))
    out_of_range = jax.jit(lambda x: xent.sparse_softmax_cross_entropy_with_logits(
        labels=jnp.asarray([5, 1, 0, 0]), logits=x, label_smoothing=e))(x)
    assert np.isnan(out_of_range[0]) and np.isfinite(out_of_range[3])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("smoothing, class_weights, masked", [
    (0.2, False, False), (0.0, True, False), (0.3, True, False), (1.0, True, False),
    (0.0, False, True), (0.1, True, True)])
def test_dense_options_in_the_kernel_equal_the_composition(
        dtype: str, smoothing: float, class_weights: bool, masked: bool) -> None:
    """Dense label smoothing, class weights and ``where`` (``_jax_options._dense_dressed_jit``:
    the labels ``where(m, (1 - e) y + e / C, 0) w`` and logits ``where(m, x, -inf)`` formed
    inside the dense kernel's loops) against the composition of ``xent._options`` (those
    as arrays, through the kernel): values, and gradients in logits, labels and class
    weights, with a ``-inf`` logit, a NaN row, a NaN label, a zero class weight,
    unnormalised labels, row weights, rank 3 with ``axis=1``; with a mask, NaN logits and
    labels at excluded classes (never read) and a point with no class left (NaN); under
    ``vmap``, and the public call on that path."""
    from xent import _options
    from xent.backends import _jax_options

    be = xent.backends.get("jax")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 5)) * 3
    x[0, 1, 2] = x[3, 2, 0] = -np.inf
    x[1, :, 3] = np.nan
    y = rng.random((4, 3, 5)) * 2  # unnormalised
    y[2, 0, 4] = np.nan
    y[3, :, 0] = [0.0, 0.5, 0.0]  # label 0 at the -inf logit: finite without smoothing
    where = None
    if masked:
        where = rng.random((4, 3, 5)) > 0.2
        where[0, :, 1] = False  # no class left: NaN
        where[2, 1, 2] = where[3, 1, 4] = False
        x[2, 1, 2], y[3, 1, 4] = np.nan, np.nan  # excluded: never read
        where[0, 1, 2] = True
        where = jnp.asarray(where)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    weights = jnp.asarray(rng.random((4, 5)), dtype)
    cw = jnp.asarray([0.5, 0.0, 2.0], dtype) if class_weights else None
    opt = _options.Options(weights=weights, class_weights=cw, label_smoothing=smoothing,
                           smooths=smoothing != 0, where=where, ignore_index=None,
                           num_classes=3)
    arrays, static = _jax_options._split(opt)

    def fast(y, x, arrays):
        return _jax_options._dense_dressed_jit(y, x, arrays, axis=1, static=static)

    def composed(y, x, arrays):
        return _jax_options._dense_jit(y, x, arrays, axis=1, static=static, ops=be)

    got, want = fast(y, x, arrays), composed(y, x, arrays)
    public = xent.softmax_cross_entropy_with_logits(
        labels=y, logits=x, axis=1, label_smoothing=smoothing, weights=weights,
        class_weights=cw, where=where)
    assert got.dtype == want.dtype == x.dtype
    assert np.array_equal(public, got, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got[1, 3]) and np.isnan(got[2, 4])  # NaN labels: NaN also at e = 1
    if masked:
        assert np.isnan(got[0, 1]) and np.isfinite(got[2, 2]) and np.isfinite(got[3, 4])
    tol = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=tol, atol=tol)
    batched = jax.vmap(fast, in_axes=(0, 0, None))(jnp.stack([y, y]), jnp.stack([x, x]),
                                                  arrays)
    assert np.array_equal(batched[1], got, equal_nan=True)
    if dtype != "float32":
        return
    finite = jnp.isfinite(want)

    def total(f):
        return lambda y, x, arrays: jnp.where(finite, f(y, x, arrays), 0.0).sum()

    floats = {k: v for k, v in arrays.items() if k != "where"}

    def over_floats(f):
        return lambda y, x, floats: total(f)(y, x, {**arrays, **floats})

    grads = jax.grad(over_floats(fast), (0, 1, 2))(y, x, floats)
    wants = jax.grad(over_floats(composed), (0, 1, 2))(y, x, floats)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(wants)):
        assert np.array_equal(np.isfinite(g), np.isfinite(w))
        ok = np.isfinite(w)
        np.testing.assert_allclose(np.asarray(g)[ok], np.asarray(w)[ok], rtol=1e-5, atol=1e-5)
    if masked:  # an excluded class's logit is never read: its gradient is 0
        assert grads[1][2, 1, 2] == 0 and not np.asarray(grads[1])[~np.asarray(
            jnp.broadcast_to(where, x.shape))].any()


def _exact_where_loss(labels, logits, where):
    """The sparse kernel on the masked logits (what ``_kept_loss`` falls back to)."""
    return JAX.sparse_softmax_cross_entropy_with_logits(
        labels, jnp.where(where, logits, -jnp.inf), 1)


def test_sparse_where_one_pass_equals_the_kernel_on_masked_logits():
    """A sparse ``where`` runs in one pass from the maximum over every class
    (``_jax_options._kept_loss``); a batch with a row that pass cannot take (NaN or +inf at
    an excluded class, no class left, an excluded maximum far above a confident row) runs
    the kernel on the masked logits. Values, gradients and per-example gradients agree with
    that kernel, and an excluded class's gradient is 0."""
    from xent.backends._jax_options import _kept_loss

    rng = np.random.default_rng(3)
    loss = jax.jit(_kept_loss(1, JAX))
    clean_x = (rng.standard_normal((256, 100)) * 3).astype(np.float32)
    clean_w = rng.random((256, 100)) > 0.2
    clean_w[np.arange(256), clean_x.argmax(1)] = True  # every maximum kept: the one pass
    labels = rng.integers(0, 100, 256)
    odd_x, odd_w = clean_x[:8].copy(), clean_w[:8].copy()
    odd_x[0, 2], odd_w[0, 2] = np.nan, False
    odd_w[1] = False
    odd_x[2, 4], odd_w[2, 4] = np.inf, False
    odd_x[3, 0], odd_w[3, 0], odd_w[3, labels[3]] = 80.0, False, True
    odd_x[3, labels[3]] = 10.0
    for x, w, t in ((clean_x, clean_w, labels), (odd_x, odd_w, labels[:8])):
        x, w, t = jnp.asarray(x), jnp.asarray(w), jnp.asarray(t)
        got, want = loss(t, x, w), _exact_where_loss(t, x, w)
        np.testing.assert_allclose(got, want, rtol=4e-7, atol=0, equal_nan=True)

        def total(x, fn=loss, t=t, w=w):
            value = fn(t, x, w)
            return jnp.where(jnp.isfinite(value), value, 0).sum()

        got_g = jax.grad(total)(x)
        want_g = jax.grad(partial(total, fn=jax.jit(_exact_where_loss)))(x)
        np.testing.assert_allclose(got_g, want_g, rtol=0, atol=0)
        assert not np.any(np.asarray(got_g)[~np.asarray(w)])  # excluded: exactly 0
        per_example = jax.vmap(jax.grad(lambda x, t, w: loss(t[None], x[None], w[None])[0]))(
            x, t, w)
        np.testing.assert_array_equal(np.asarray(per_example)[~np.asarray(w)], 0)
    assert np.isnan(loss(jnp.asarray(labels[:8]), jnp.asarray(odd_x), jnp.asarray(odd_w))[1])
