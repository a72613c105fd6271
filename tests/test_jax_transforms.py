"""Every JAX transform on the four functions (DESIGN.md section 8).

Each (transform, function) cell is one test that runs the transform twice: on finite
inputs against the same transform of JAX's own formula (``jax.nn`` and the optax-style
losses), and on inputs with masked classes (logit ``-inf``, label 0) against exact values
from the analytic derivatives in float64, where JAX's own dense formula is NaN.
Then the backend's conformance hooks in the transform modes (``vmap``, ``export``) and its
forward-mode hook (``jvp``) against the analytic formulas.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

if "jax" not in (os.environ.get("XENT_TEST_BACKENDS") or "jax").split(","):
    pytest.skip("jax is not in XENT_TEST_BACKENDS", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import xent  # noqa: E402

JAX = xent.backends.get("jax")

# -- inputs: 3 rows of 5 classes; the masked rows mask 0, 1 and 2 classes --------------------
_rng = np.random.default_rng(8)
FINITE_X = (_rng.standard_normal((3, 5)) * 2).astype(np.float32)
FINITE_Y = _rng.dirichlet(np.ones(5), 3).astype(np.float32)
MASK = np.zeros((3, 5), bool)
MASK[0, 2] = MASK[1, 0] = MASK[1, 4] = True
MASKED_X = np.where(MASK, -np.inf, FINITE_X).astype(np.float32)
MASKED_Y = np.where(MASK, 0, FINITE_Y).astype(np.float32)
MASKED_Y /= MASKED_Y.sum(-1, keepdims=True)
K = np.array([1, 2, 3], np.int32)  # never a masked class
TX = _rng.standard_normal((3, 5)).astype(np.float32)  # tangents
TY = np.where(MASK, 0, _rng.standard_normal((3, 5))).astype(np.float32)  # labels stay 0


def _dense(y: Any, x: Any) -> Any:
    return xent.softmax_cross_entropy_with_logits(labels=y, logits=x)


def _sparse(k: Any, x: Any) -> Any:
    return xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x)


def _native_dense(y: Any, x: Any) -> Any:  # optax.softmax_cross_entropy
    return -(y * jax.nn.log_softmax(x)).sum(-1)


def _native_sparse(k: Any, x: Any) -> Any:  # optax.softmax_cross_entropy_with_integer_labels
    return jax.nn.logsumexp(x, -1) - jnp.take_along_axis(x, k[..., None], -1)[..., 0]


#: name -> (xent, JAX's own formula, the float arguments' indices)
FUNCTIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any], tuple[int, ...]]] = {
    "dense": (_dense, _native_dense, (0, 1)),
    "sparse": (_sparse, _native_sparse, (1,)),
    "log_softmax": (xent.log_softmax, jax.nn.log_softmax, (0,)),
    "softmax": (xent.softmax, jax.nn.softmax, (0,)),
}


def arguments(function: str, masked: bool) -> tuple[np.ndarray, ...]:
    x, y = (MASKED_X, MASKED_Y) if masked else (FINITE_X, FINITE_Y)
    return {"dense": (y, x), "sparse": (K, x)}.get(function, (x,))


def tangents(function: str) -> tuple[np.ndarray, ...]:
    return {"dense": (TY, TX)}.get(function, (TX,))


def weights(function: str) -> np.ndarray:
    """Fixed weights of the outputs: the scalar ``sum(weights * f)`` is what grad and
    hessian differentiate (``sum(softmax)`` alone would be constant)."""
    shape = (3,) if function in ("dense", "sparse") else (3, 5)
    return np.linspace(0.5, 1.5, int(np.prod(shape)), dtype=np.float32).reshape(shape)


# -- the transforms: (f, args, argnums, weights, tangents) -> a pytree of arrays -------------
def _scalar(f: Callable[..., Any], w: Any) -> Callable[..., Any]:
    return lambda *a: (f(*a) * w).sum()


def _jvp(f: Callable[..., Any], args: Any, argnums: Any, w: Any, t: Any) -> Any:
    argnums = (argnums,) if isinstance(argnums, int) else argnums

    def of_moving(*moved: Any) -> Any:
        full = list(args)
        for i, m in zip(argnums, moved):
            full[i] = m
        return f(*full)
    return jax.jvp(of_moving, [args[i] for i in argnums], list(t))


def _scan(f: Callable[..., Any], args: Any, argnums: Any, w: Any, t: Any) -> Any:
    """A sequence of problems (the rows): the weighted total as the carry, and its
    gradient back through the scan."""
    def total(*a: Any) -> Any:
        def step(carry: Any, row: Any) -> Any:
            *problem, w_row = row
            return carry + (f(*problem) * w_row).sum(), None
        return jax.lax.scan(step, jnp.float32(0), (*a, w))[0]
    return jax.value_and_grad(total, argnums)(*args)


def _vmap_grad(f: Callable[..., Any], args: Any, argnums: Any, w: Any, t: Any) -> Any:
    """Per-example gradients: the gradient of each row's weighted output, batched."""
    def row_grad(*row: Any) -> Any:
        *problem, w_row = row
        return jax.grad(_scalar(f, w_row), argnums)(*problem)
    return jax.vmap(row_grad)(*args, w)


def _export(f: Callable[..., Any], args: Any, argnums: Any, w: Any, t: Any) -> Any:
    """A serialized round trip of ``jax.export`` with a symbolic batch dimension and the
    VJP (``vjp_order=1``): the values for 3 rows and for 2 rows from the one export, and
    the gradient of the restored function."""
    restored = _restored(f, tuple(str(a.dtype) for a in args))
    return (restored.call(*args), restored.call(*(a[:2] for a in args)),
            jax.grad(_scalar(restored.call, w), argnums)(*args))


@functools.cache
def _restored(f: Callable[..., Any], dtypes: tuple[str, ...]) -> Any:
    """The deserialized export of ``f`` for arguments ``[b, 5]`` / ``[b]`` of ``dtypes``
    (cached: the finite and the masked inputs share it, and its compiled calls)."""
    shapes = [(3, 5) if d.startswith("float") else (3,) for d in dtypes]
    args = [jax.ShapeDtypeStruct(s, d) for s, d in zip(shapes, dtypes)]
    specs = jax.export.symbolic_args_specs(args, "b, ...")
    exported = jax.export.export(jax.jit(f))(*specs)
    return jax.export.deserialize(exported.serialize(vjp_order=1))


def _export_reference(f: Callable[..., Any], args: Any, argnums: Any, w: Any, t: Any) -> Any:
    """What :func:`_export` must return, computed without the export (the export of JAX's
    own formula would test JAX's export, not xent; it costs as many compiles)."""
    return f(*args), f(*(a[:2] for a in args)), jax.grad(_scalar(f, w), argnums)(*args)


TRANSFORMS: dict[str, Callable[..., Any]] = {
    "jit": lambda f, a, n, w, t: jax.jit(f)(*a),
    "grad": lambda f, a, n, w, t: jax.grad(_scalar(f, w), n)(*a),
    "vmap": lambda f, a, n, w, t: jax.vmap(f)(*a),  # over the rows: rank-1 problems
    "vmap_grad": _vmap_grad,
    "jvp": _jvp,
    "jacfwd": lambda f, a, n, w, t: jax.jacfwd(f, n)(*a),
    "jacrev": lambda f, a, n, w, t: jax.jacrev(f, n)(*a),
    "hessian": lambda f, a, n, w, t: jax.hessian(_scalar(f, w), n)(*a),
    "checkpoint": lambda f, a, n, w, t: jax.grad(jax.checkpoint(_scalar(f, w)), n)(*a),
    "scan": _scan,
    "export": _export,
}


# -- exact values on the masked inputs (float64; the rows are independent) ------------------
def exact(function: str, args: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """Value ``V``, Jacobians ``J[a]`` (output dims + argument dims) and Hessians
    ``H[a][b]`` of ``sum(weights * f)``, from the analytic formulas."""
    x = args[-1].astype(np.float64)
    n, c = x.shape
    lse = np.log(np.exp(x).sum(-1, keepdims=True))
    p = np.exp(x - lse)  # 0 at a masked class
    eye_c = np.eye(c)
    w = weights(function).astype(np.float64)
    dsoftmax = p[:, :, None] * (eye_c - p[:, None, :])  # [i, c, d] = p_c (delta_cd - p_d)

    def rows(block: np.ndarray) -> np.ndarray:
        """Per-row blocks ``[i, ..., d]`` as ``[i, ..., j, d]``, 0 where ``i != j`` (also
        beside an infinite block entry: row i does not depend on row j)."""
        out = np.zeros(block.shape[:-1] + (n, block.shape[-1]))
        for i in range(n):
            out[i, ..., i, :] = block[i]
        return out

    if function == "dense":
        y = args[0].astype(np.float64)
        s = y.sum(-1, keepdims=True)
        with np.errstate(invalid="ignore"):  # 0 * inf, replaced by 0
            value = np.where(y == 0, 0, y * (lse - x)).sum(-1)
        jacobians = [rows(lse - x), rows(p * s - y)]  # d/dlabels: +inf at a masked class
        hxx = rows((w[:, None] * s)[:, :, None] * dsoftmax)
        hxy = rows(w[:, None, None] * (p[:, :, None] - eye_c))  # d2 / dlogits_c dlabels_d
        hessians = [[np.zeros((n, c, n, c)), hxy.transpose(2, 3, 0, 1)], [hxy, hxx]]
    elif function == "sparse":
        value = (lse - np.take_along_axis(x, args[0][:, None], -1))[:, 0]
        jacobians = [rows(p - eye_c[args[0]])]
        hessians = [[rows(w[:, None, None] * dsoftmax)]]
    elif function == "log_softmax":
        value = x - lse
        jacobians = [rows(eye_c - p[:, None, :])]
        hessians = [[rows(-w.sum(-1)[:, None, None] * dsoftmax)]]
    else:
        value = p
        jacobians = [rows(dsoftmax)]
        g = w - (w * p).sum(-1, keepdims=True)  # H_cd = dsoftmax_cd g_c - p_c p_d g_d
        hessians = [[rows(dsoftmax * g[:, :, None] - p[:, :, None] * (p * g)[:, None, :])]]
    return {"V": value, "J": jacobians, "H": hessians, "w": w}


def _contract(w: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
    """``sum_out w_out J[out, ...]`` (the weights are positive: no ``0 * inf``)."""
    return (np.expand_dims(w, tuple(range(w.ndim, jacobian.ndim))) * jacobian).sum(
        tuple(range(w.ndim)))


def expected(transform: str, function: str, args: tuple[np.ndarray, ...]) -> Any:
    """What ``transform`` of ``function`` returns on ``args``, from :func:`exact`."""
    argnums = FUNCTIONS[function][2]
    e = exact(function, args)
    jac = [e["J"][i] for i in range(len(argnums))]
    grads = tuple(_contract(e["w"], j) for j in jac)
    one = (lambda g: g[0]) if len(argnums) == 1 else (lambda g: g)
    if transform in ("jit", "vmap"):
        return e["V"]
    if transform in ("grad", "vmap_grad", "checkpoint"):
        return one(grads)  # rows are independent: per-row gradients are the gradient
    if transform == "jvp":
        directions = tangents(function)
        out = sum(_contract_in(j, t.astype(np.float64)) for j, t in zip(jac, directions))
        return e["V"], out
    if transform in ("jacfwd", "jacrev"):
        return one(tuple(jac))
    if transform == "hessian":
        return (e["H"][0][0] if len(argnums) == 1
                else tuple(tuple(h) for h in e["H"]))
    if transform == "scan":
        return (e["w"] * e["V"]).sum(), one(grads)
    if transform == "export":
        return e["V"], e["V"][:2], one(grads)
    raise AssertionError(transform)


def _contract_in(jacobian: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``J . t`` over the argument's dims, where a zero tangent times an infinity is 0."""
    axes = tuple(range(jacobian.ndim - t.ndim, jacobian.ndim))
    with np.errstate(invalid="ignore"):  # 0 * inf, replaced by 0
        return np.where(t == 0, 0, jacobian * t).sum(axes)


def assert_tree_close(got: Any, want: Any, rtol: float, atol: float) -> None:
    got_leaves, got_tree = jax.tree.flatten(got)
    want_leaves, want_tree = jax.tree.flatten(want)
    assert got_tree == want_tree, (got_tree, want_tree)
    for g, w in zip(got_leaves, want_leaves):
        g = np.asarray(g, np.float64)
        assert g.shape == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)  # inf and NaN: same places


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_transform(transform: str, function: str) -> None:
    fn, native, argnums = FUNCTIONS[function]
    run = TRANSFORMS[transform]
    if transform != "export":  # one compiled program for both inputs
        run = jax.jit(run, static_argnums=(0, 2))
    argnums_ = argnums[0] if len(argnums) == 1 else argnums
    w = jnp.asarray(weights(function))
    finite = [jnp.asarray(a) for a in arguments(function, masked=False)]
    t = [jnp.asarray(d) for d in tangents(function)]
    reference = jax.jit(_export_reference, static_argnums=(0, 2)) if transform == "export" else run
    want = jax.tree.map(np.asarray, reference(native, finite, argnums_, w, t))
    assert_tree_close(run(fn, finite, argnums_, w, t), want, rtol=2e-5, atol=2e-6)
    masked = [jnp.asarray(a) for a in arguments(function, masked=True)]
    got = run(fn, masked, argnums_, w, t)
    assert_tree_close(got, expected(transform, function, arguments(function, True)),
                      rtol=2e-5, atol=2e-6)


# -- the conformance hooks: transform modes and forward mode --------------------------------
def _analytic(x: np.ndarray, y: np.ndarray, k: np.ndarray, tx: np.ndarray,
              ty: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(value, directional derivative) of the four functions in float64, from the
    formulas: ``d loss = sum_c (p_c sum(y) - y_c) dx_c + sum_c (lse - x_c) dy_c`` (a label
    that does not move contributes 0), ``d log_softmax = dx - sum_k p_k dx_k``,
    ``d softmax = p d log_softmax``."""
    x, y, tx, ty = (a.astype(np.float64) for a in (x, y, tx, ty))
    lse = np.log(np.exp(x).sum(-1, keepdims=True))
    p = np.exp(x - lse)
    dlog = tx - (p * tx).sum(-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # 0 * inf, replaced by 0
        loss = np.where(y == 0, 0, y * (lse - x)).sum(-1)
        dlabels = np.where(ty == 0, 0, (lse - x) * ty).sum(-1)
    one_hot = np.eye(x.shape[-1])[k]
    return {
        "dense": (loss, ((p * y.sum(-1, keepdims=True) - y) * tx).sum(-1) + dlabels),
        "sparse": ((lse - x)[np.arange(len(k)), k], ((p - one_hot) * tx).sum(-1)),
        "log_softmax": (x - lse, dlog),
        "softmax": (p, p * dlog),
    }


@pytest.mark.parametrize(("mode", "dtype"), [  # each mode, each dtype
    ("eager", "float32"), ("jit", "float16"), ("vmap", "bfloat16"), ("export", "float64"),
])
def test_jvp_hook(mode: str, dtype: str) -> None:
    np_dtype = jnp.dtype(dtype)  # bfloat16 included
    x, y, tx, ty = (a.astype(np_dtype) for a in (MASKED_X, MASKED_Y, TX, TY))
    want = _analytic(x, y, K, tx, ty)
    calls = {
        "dense": (_dense, (y, x), (ty, tx)),
        "sparse": (_sparse, (K.astype(np.int64), x), (None, tx)),  # integer labels: held
        "log_softmax": (xent.log_softmax, (x,), (tx,)),
        "softmax": (xent.softmax, (x,), (tx,)),
    }
    tol = {"float16": 2e-3, "bfloat16": 2e-2, "float32": 2e-5, "float64": 1e-12}[dtype]
    for name, (fn, args, directions) in calls.items():
        value, tangent = JAX.jvp(mode, fn, args, directions)
        assert value.dtype == tangent.dtype == np_dtype, name
        for got, expect in zip((value, tangent), want[name]):
            np.testing.assert_allclose(got.astype(np.float64), expect, rtol=tol, atol=tol,
                                       err_msg=f"{name} in {mode}")


@pytest.mark.parametrize("mode", JAX.transform_modes)
def test_value_and_grad_hook_in_transform_modes(mode: str) -> None:
    value, dy, dx = JAX.value_and_grad(mode, _dense, MASKED_Y, MASKED_X)
    x, y = MASKED_X.astype(np.float64), MASKED_Y.astype(np.float64)
    lse = np.log(np.exp(x).sum(-1, keepdims=True))
    np.testing.assert_allclose(dx, np.exp(x - lse) * y.sum(-1, keepdims=True) - y, atol=2e-6)
    np.testing.assert_allclose(dy, lse - x, rtol=2e-6)  # +inf at the masked classes
    value, dk, dx = JAX.value_and_grad(mode, _sparse, K, MASKED_X)
    assert dk is None and np.isfinite(dx).all()
    out = JAX.run(mode, _sparse, np.array([1, 5, 2]), MASKED_X)  # 5 is out of range: NaN
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()


def test_vmap_mode_raises_when_the_copies_differ() -> None:
    @jax.custom_batching.custom_vmap
    def leaky(x: Any) -> Any:
        return x

    @leaky.def_vmap
    def leaky_rule(size: int, batched: list[bool], x: Any) -> Any:  # a broken batching rule
        return x + jnp.arange(size, dtype=x.dtype).reshape((size,) + (1,) * (x.ndim - 1)), True

    np.testing.assert_allclose(JAX.run("vmap", lambda x: xent.softmax(x), FINITE_X),
                               jax.nn.softmax(FINITE_X), rtol=1e-6)
    with pytest.raises(RuntimeError, match="two copies of one problem"):
        JAX.run("vmap", lambda x: xent.softmax(leaky(x)), FINITE_X)


def test_export_mode_exports_once_for_every_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    exports = []
    real_export = jax.export.export

    def counting_export(*args: Any, **kwargs: Any) -> Any:
        exports.append(args)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(jax.export, "export", counting_export)
    fn = lambda k, x: _sparse(k, x)  # noqa: E731 - a fresh function: nothing cached
    rng = np.random.default_rng(0)
    for rows, classes in ((8, 6), (2, 3), (3, 20000)):  # 60000 > SMALL: the cond path
        x = rng.standard_normal((rows, classes)).astype(np.float32)
        k = rng.integers(0, classes, rows)
        x64 = x.astype(np.float64)
        lse = np.log(np.exp(x64).sum(-1))
        np.testing.assert_allclose(JAX.run("export", fn, k, x),
                                   lse - x64[np.arange(rows), k], rtol=1e-5)
    assert len(exports) == 1  # symbolic batch and class dimensions


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"unknown mode 'pmap'.*eager, jit, vmap, export"):
        JAX.run("pmap", xent.softmax, FINITE_X)
    with pytest.raises(ValueError, match="unknown mode"):
        JAX.jvp("pmap", xent.softmax, (FINITE_X,), (TX,))


def test_transform_test_subset_names_cases_and_dtypes_of_the_catalog() -> None:
    from xent.conformance import cases

    assert set(JAX.transform_test_subset) == set(JAX.transform_modes)
    for mode, (names, dtypes) in JAX.transform_test_subset.items():
        assert set(names) <= set(cases.BY_NAME), mode
        assert set(dtypes) <= set(JAX.dtypes), mode


def test_export_for_every_platform() -> None:
    # export on this CPU machine, serve on an accelerator: one artifact lowered for each
    for function, (fn, _, _) in FUNCTIONS.items():
        args = [jnp.asarray(a) for a in arguments(function, masked=True)]
        specs = jax.export.symbolic_args_specs(args, "b, ...")
        exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda", "rocm", "tpu"))(
            *specs)
        restored = jax.export.deserialize(exported.serialize())
        assert restored.platforms == ("cpu", "cuda", "rocm", "tpu")
        np.testing.assert_allclose(restored.call(*args), fn(*args), rtol=1e-6)
