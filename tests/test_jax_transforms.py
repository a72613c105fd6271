"""Every JAX transform on the four functions (DESIGN.md section 8).

Each (transform, function) cell is one test that runs the transform twice: on finite
inputs against the same transform of JAX's own formula (``jax.nn`` and the optax-style
losses), and on inputs with masked classes (logit ``-inf``, label 0) against exact values
from the analytic derivatives in float64, where JAX's own dense formula is NaN.
Then the backend's conformance hooks in the transform modes (``vmap``, ``export``) and its
forward-mode hook (``jvp``) against the analytic formulas.
"""

from __future__ import annotations

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


def _jvp(f, args, argnums, w, t):  # type: ignore[no-untyped-def]
    argnums = (argnums,) if isinstance(argnums, int) else argnums

    def of_moving(*moved: Any) -> Any:
        full = list(args)
        for i, m in zip(argnums, moved):
            full[i] = m
        return f(*full)
    return jax.jvp(of_moving, [args[i] for i in argnums], list(t))


def _scan(f, args, argnums, w, t):  # type: ignore[no-untyped-def]
    """A sequence of problems (the rows): the weighted total as the carry, and its
    gradient back through the scan."""
    def total(*a: Any) -> Any:
        def step(carry: Any, row: Any) -> Any:
            *problem, w_row = row
            return carry + (f(*problem) * w_row).sum(), None
        return jax.lax.scan(step, jnp.float32(0), (*a, w))[0]
    return jax.value_and_grad(total, argnums)(*args)


def _vmap_grad(f, args, argnums, w, t):  # type: ignore[no-untyped-def]
    """Per-example gradients: the gradient of each row's weighted output, batched."""
    def row_grad(*row: Any) -> Any:
        *problem, w_row = row
        return jax.grad(_scalar(f, w_row), argnums)(*problem)
    return jax.vmap(row_grad)(*args, w)


def _export(f, args, argnums, w, t):  # type: ignore[no-untyped-def]
    """A serialized round trip of ``jax.export`` with a symbolic batch dimension and the
    VJP (``vjp_order=1``): the values for 3 rows and for 2 rows from the one export, and
    the gradient of the restored function."""
    specs = jax.export.symbolic_args_specs(args, "b, ...")
    exported = jax.export.export(jax.jit(f))(*specs)
    restored = jax.export.deserialize(exported.serialize(vjp_order=1))
    return (restored.call(*args), restored.call(*(a[:2] for a in args)),
            jax.grad(_scalar(restored.call, w), argnums)(*args))


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
    want = jax.tree.map(np.asarray, run(native, finite, argnums_, w, t))
    assert_tree_close(run(fn, finite, argnums_, w, t), want, rtol=2e-5, atol=2e-6)
    masked = [jnp.asarray(a) for a in arguments(function, masked=True)]
    got = run(fn, masked, argnums_, w, t)
    assert_tree_close(got, expected(transform, function, arguments(function, True)),
                      rtol=2e-5, atol=2e-6)
