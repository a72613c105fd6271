"""Every torch transform on every xent function (DESIGN.md section 8).

Each transform is applied to the xent call and, on finite inputs, to torch's own formula
(``F.cross_entropy`` with probabilities or indices, ``torch.log_softmax``,
``torch.softmax``): the results must agree. On inputs with masked classes (a ``-inf``
logit where the label is 0), where torch's own dense formula is NaN, the results must equal
the exact values, written out below from the analytic derivatives. For the losses the labels
are either passed to the transformed function as an argument or captured by it.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn.functional as F

import xent

INF = float("inf")
Fn = Callable[[Any, torch.Tensor], torch.Tensor]
FUNCTIONS = ("dense", "sparse", "log_softmax", "softmax")
LOSSES = ("dense", "sparse")

XENT: dict[str, Fn] = {
    "dense": lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x),
    "sparse": lambda y, x: xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
    "log_softmax": lambda y, x: xent.log_softmax(x),
    "softmax": lambda y, x: xent.softmax(x),
}
NATIVE: dict[str, Fn] = {
    "dense": lambda y, x: F.cross_entropy(x, y, reduction="none"),
    "sparse": lambda y, x: F.cross_entropy(x, y, reduction="none"),
    "log_softmax": lambda y, x: torch.log_softmax(x, -1),
    "softmax": lambda y, x: torch.softmax(x, -1),
}


@dataclass
class Problem:
    """One function's inputs and the fixed directions the transforms use (float64)."""

    name: str
    labels: torch.Tensor  # dense probabilities or class indices (unused by softmax)
    logits: torch.Tensor  # [N, C]
    weights: torch.Tensor  # the output's shape: loss = sum(weights * f)
    v: torch.Tensor  # a direction in logits space (Hessian-vector products, jvp)
    v_labels: torch.Tensor  # a direction in labels space, 0 at masked classes
    cotangents: torch.Tensor  # [2, *output shape] for is_grads_batched
    batch: tuple[torch.Tensor, torch.Tensor]  # ([B, ...] labels, [B, N, C] logits) for vmap

    @property
    def label_grads(self) -> bool:
        return self.name == "dense"


def _problem(name: str, logits: np.ndarray, labels: np.ndarray, index: np.ndarray,
             seed: int) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(logits)
    y = torch.from_numpy(labels if name == "dense" else index)
    out_shape = x.shape[:1] if name in LOSSES else x.shape
    # the second problem of the vmap batch: the same rows in the other order
    batch = (torch.stack([y, y.flip(0)]), torch.stack([x, x.flip(0)]))
    return Problem(
        name, y, x, torch.randn(out_shape, generator=gen, dtype=torch.float64),
        torch.randn(x.shape, generator=gen, dtype=torch.float64),
        torch.randn(x.shape, generator=gen, dtype=torch.float64) * (x != -INF),
        torch.randn((2, *out_shape), generator=gen, dtype=torch.float64), batch,
    )


def finite(name: str) -> Problem:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 4)) * 2
    labels = rng.dirichlet(np.ones(4), size=2)
    return _problem(name, logits, labels, np.array([3, 1]), seed=1)


def masked(name: str) -> Problem:
    logits = np.array([[0.5, 1.5, -INF, 0.1], [2.2, -INF, 1.7, -INF]])
    labels = np.array([[0.2, 0.8, 0.0, 0.0], [0.6, 0.0, 0.4, 0.0]])
    return _problem(name, logits, labels, np.array([1, 2]), seed=2)


# -- the transforms: (f, problem, labels "passed" or "captured") -> tensors -----------------
def _weighted(f: Fn, p: Problem) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """``sum(weights * f(y, x))``: a scalar whose derivatives see every output element."""
    return lambda y, x: (f(y, x) * p.weights).sum()


def _inputs(p: Problem) -> tuple[list[torch.Tensor], torch.Tensor]:
    x = p.logits.clone().requires_grad_(True)
    y = p.labels.clone().requires_grad_(True) if p.label_grads else p.labels
    return ([x, y] if p.label_grads else [x]), y


def autograd_grad(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    inputs, y = _inputs(p)
    return torch.autograd.grad(_weighted(f, p)(y, inputs[0]), inputs)


def double_backward(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    inputs, y = _inputs(p)
    (g,) = torch.autograd.grad(_weighted(f, p)(y, inputs[0]), inputs[0], create_graph=True)
    return torch.autograd.grad((g * p.v).sum(), inputs)  # Hessian-vector products


def grads_batched(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    inputs, y = _inputs(p)
    return torch.autograd.grad(f(y, inputs[0]), inputs, p.cotangents, is_grads_batched=True)


def dual_tensors(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    with forward_ad.dual_level():
        x = forward_ad.make_dual(p.logits, p.v)
        y = forward_ad.make_dual(p.labels, p.v_labels) if p.label_grads else p.labels
        return (forward_ad.unpack_dual(f(y, x)).tangent,)


def _call(g: Callable[..., Any], p: Problem, labels: str, *args: Any) -> Any:
    """``g(labels, *args)`` where labels are passed, ``g(*args)`` where ``g`` captured them."""
    return g(p.labels, *args) if labels == "passed" else g(*args)


def _logits_fn(f: Fn, p: Problem, labels: str) -> Callable[..., torch.Tensor]:
    return f if labels == "passed" else functools.partial(f, p.labels)


def func_grad(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    if labels == "passed" and p.label_grads:
        dlabels, dlogits = torch.func.grad(_weighted(f, p), argnums=(0, 1))(p.labels, p.logits)
        return dlogits, dlabels
    grad = torch.func.grad(_logits_fn(_weighted(f, p), p, labels), argnums=_argnum(labels))
    return (_call(grad, p, labels, p.logits),)


def func_vmap(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    ys, xs = p.batch
    if labels == "passed":
        return (torch.func.vmap(f)(ys, xs),)
    return (torch.func.vmap(functools.partial(f, p.labels))(xs),)


def vmap_of_grad(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    ys, xs = p.batch
    grad = torch.func.grad(_weighted(f, p), argnums=1)
    if labels == "passed":
        return (torch.func.vmap(grad)(ys, xs),)
    return (torch.func.vmap(functools.partial(grad, p.labels))(xs),)


def jacrev(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    return (_call(torch.func.jacrev(_logits_fn(f, p, labels), argnums=_argnum(labels)),
                  p, labels, p.logits),)


def jacfwd(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    return (_call(torch.func.jacfwd(_logits_fn(f, p, labels), argnums=_argnum(labels)),
                  p, labels, p.logits),)


def hessian(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    g = _logits_fn(_weighted(f, p), p, labels)
    return (_call(torch.func.hessian(g, argnums=_argnum(labels)), p, labels, p.logits),)


def _argnum(labels: str) -> int:
    return 1 if labels == "passed" else 0


def func_jvp(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    if labels == "passed":  # dense only: a tangent for the labels too
        return (torch.func.jvp(f, (p.labels, p.logits), (p.v_labels, p.v))[1],)
    return (torch.func.jvp(functools.partial(f, p.labels), (p.logits,), (p.v,))[1],)


def jvp_of_grad(f: Fn, p: Problem, labels: str) -> tuple[torch.Tensor, ...]:
    grad = torch.func.grad(_logits_fn(_weighted(f, p), p, labels), argnums=_argnum(labels))
    g = functools.partial(grad, p.labels) if labels == "passed" else grad
    return (torch.func.jvp(g, (p.logits,), (p.v,))[1],)


TRANSFORMS: dict[str, Callable[[Fn, Problem, str], tuple[torch.Tensor, ...]]] = {
    "autograd.grad": autograd_grad,
    "double backward": double_backward,
    "is_grads_batched": grads_batched,
    "forward_ad": dual_tensors,
    "func.grad": func_grad,
    "func.vmap": func_vmap,
    "vmap(grad)": vmap_of_grad,
    "func.jacrev": jacrev,
    "func.jacfwd": jacfwd,
    "func.jvp": func_jvp,
    "func.hessian": hessian,
    "jvp(grad)": jvp_of_grad,
}
AUTOGRAD = ("autograd.grad", "double backward", "is_grads_batched", "forward_ad")


def _cases() -> list[Any]:
    cases = []
    for transform in TRANSFORMS:
        for name in FUNCTIONS:
            if transform in AUTOGRAD or name not in LOSSES:
                cases.append(pytest.param(transform, name, "captured",
                                          id=f"{transform}-{name}"))
                continue
            for labels in ("passed", "captured"):
                if transform == "func.jvp" and labels == "passed" and name == "sparse":
                    continue  # integer labels have no tangent: passing them is capturing
                cases.append(pytest.param(transform, name, labels,
                                          id=f"{transform}-{name}-labels {labels}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize(("transform", "name", "labels"), CASES)
def test_transform_equals_torch_on_finite_inputs(transform: str, name: str, labels: str) -> None:
    p = finite(name)
    ours = TRANSFORMS[transform](XENT[name], p, labels)
    theirs = TRANSFORMS[transform](NATIVE[name], p, labels)
    assert len(ours) == len(theirs)
    for mine, native in zip(ours, theirs, strict=True):
        assert mine.dtype == torch.float64 and mine.shape == native.shape
        torch.testing.assert_close(mine, native, rtol=1e-12, atol=1e-12)


# -- exact values on masked classes ---------------------------------------------------------
def _rows(name: str, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Analytic value and derivatives for logits ``x [N, C]`` with ``-inf`` classes.

    ``J``: d f / d x, ``[*out, N, C]``; ``Jy``: d f / d labels (dense); ``H``: the Hessian
    of ``sum(w * f)`` in x, ``[N, C, N, C]``; ``Hxy``: d^2 sum(w * f) / dx dlabels."""
    n, c = x.shape
    lse = np.log(np.exp(x).sum(1, keepdims=True))
    p, eye = np.exp(x - lse), np.eye(c)
    dense = np.eye(c)[y] if y.ndim == 1 else y  # one-hot for sparse labels
    s = dense.sum(1)
    out_shape = (n,) if name in LOSSES else (n, c)
    J, H = np.zeros(out_shape + (n, c)), np.zeros((n, c, n, c))
    Jy, Hxy = np.zeros((n, n, c)), np.zeros((n, c, n, c))
    for r in range(n):
        dp = eye - p[r]  # d log p_c / d x_k = delta_ck - p_k
        if name in LOSSES:
            J[r, r] = s[r] * p[r] - dense[r]
            H[r, :, r] = w[r] * s[r] * (np.diag(p[r]) - np.outer(p[r], p[r]))
            Jy[r, r] = (lse[r] - x[r])  # +inf at a masked class
            Hxy[r, :, r] = w[r] * (p[r][:, None] - eye)
        elif name == "log_softmax":
            J[r, :, r] = dp
            H[r, :, r] = -w[r].sum() * (np.diag(p[r]) - np.outer(p[r], p[r]))
        else:  # softmax: d^2 sum_c w_c p_c = p_k (dp_kl (w_k - wbar) - p_l (w_l - wbar))
            J[r, :, r] = p[r][:, None] * dp
            dev = w[r] - (w[r] * p[r]).sum()
            H[r, :, r] = p[r][:, None] * (dp * dev[:, None] - p[r][None, :] * dev[None, :])
    with np.errstate(invalid="ignore"):
        values = {"dense": np.where(dense == 0, 0, dense * (lse - x)).sum(1),
                  "log_softmax": x - lse, "softmax": p}
    return {"value": values.get(name, values["dense"]), "J": J, "Jy": Jy, "H": H, "Hxy": Hxy}


def exact(transform: str, name: str, p: Problem, labels: str) -> tuple[np.ndarray, ...]:
    """The exact results of ``transform`` on problem ``p`` (float64, from :func:`_rows`)."""
    y, x = p.labels.numpy(), p.logits.numpy()
    w, v, vy = p.weights.numpy(), p.v.numpy(), p.v_labels.numpy()
    a = _rows(name, y, x, w)
    out_dims = a["J"].ndim - 2
    wJ = np.tensordot(w, a["J"], out_dims)  # the gradient of sum(w * f)
    grads = (wJ, np.tensordot(w, a["Jy"], 1)) if p.label_grads else (wJ,)
    hvp = np.tensordot(a["H"], v, 2)
    label_hvp = np.tensordot(v, a["Hxy"], 2)
    jvp = np.tensordot(a["J"], v, 2)
    if transform in ("func.vmap", "vmap(grad)"):
        ys, xs = (t.numpy() for t in p.batch)
        if labels == "captured":  # every problem of the batch sees the captured labels
            ys = np.stack([y] * len(xs))
        key = "value" if transform == "func.vmap" else "grad"
        rows = [_rows(name, yb, xb, w) for yb, xb in zip(ys, xs, strict=True)]
        return (np.stack([r["value"] if key == "value" else np.tensordot(w, r["J"], out_dims)
                          for r in rows]),)
    with np.errstate(invalid="ignore"):  # inf * 0 at a masked class: its tangent is 0
        label_jvp = np.where(vy == 0, 0, a["Jy"].sum(0) * vy).sum(1) if p.label_grads else 0
    return {
        "autograd.grad": grads,
        "func.grad": grads if labels == "passed" else (wJ,),
        "double backward": (hvp, label_hvp) if p.label_grads else (hvp,),
        "is_grads_batched": tuple(
            np.stack([np.tensordot(c, j, out_dims) for c in p.cotangents.numpy()])
            for j in ((a["J"], a["Jy"]) if p.label_grads else (a["J"],))),
        "forward_ad": (jvp + label_jvp,),
        "func.jvp": (jvp + (label_jvp if labels == "passed" else 0),),
        "func.jacrev": (a["J"],),
        "func.jacfwd": (a["J"],),
        "func.hessian": (a["H"],),
        "jvp(grad)": (hvp,),
    }[transform]


@pytest.mark.parametrize(("transform", "name", "labels"), CASES)
def test_transform_is_exact_on_masked_classes(transform: str, name: str, labels: str) -> None:
    p = masked(name)
    ours = TRANSFORMS[transform](XENT[name], p, labels)
    expected = exact(transform, name, p, labels)
    assert len(ours) == len(expected)
    for mine, value in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine.detach().numpy(), value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transform", ["func.grad", "func.vmap", "func.jacfwd", "func.hessian"])
@pytest.mark.parametrize("labels", ["passed", "captured"])
def test_out_of_range_labels_raise_under_torch_func(transform: str, labels: str) -> None:
    # eager on CPU, the labels' values are on the host under every torch.func wrapper
    p = finite("sparse")
    p.labels = torch.tensor([3, 4])  # 4 classes: 4 is out of range
    p.batch = (torch.stack([p.labels, p.labels.flip(0)]), p.batch[1])
    with pytest.raises(ValueError, match=r"sparse label 4 is out of range \[0, 4\)"):
        TRANSFORMS[transform](XENT["sparse"], p, labels)


# -- torch.compile(fullgraph=True): one graph holds xent's four functions and torch's own --
# (backend "aot_eager": dynamo's graph and AOTAutograd's backward, without inductor's code
# generation, which takes a minute on 2 cores; the conformance suite's ``compile`` mode runs
# inductor.)
def _both(y: torch.Tensor, y_native: torch.Tensor, index: torch.Tensor, x: torch.Tensor,
          captured: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """xent's functions (labels passed, then captured) and torch's own formulas. Separate
    dense labels for torch's formula: its NaN label gradient must not reach xent's."""
    ours = [XENT[n](y if n == "dense" else index, x) for n in FUNCTIONS]
    ours += [XENT[n](captured[n], x) for n in LOSSES]
    theirs = [NATIVE[n](y_native if n == "dense" else index, x) for n in FUNCTIONS]
    return (*ours, *theirs)


_COMPILED: list[Callable[..., Any]] = []


def _compiled() -> Callable[..., Any]:
    if not _COMPILED:  # one compiled function for the tests below
        _COMPILED.append(torch.compile(_both, fullgraph=True, backend="aot_eager"))
    return _COMPILED[0]


def _compile_results(case: Callable[[str], Problem]) -> dict[str, Any]:
    """Values and gradients of every output of the compiled function on ``case``'s input:
    ``name -> (value, dlogits[, dlabels])``."""
    dense, sparse = case("dense"), case("sparse")
    x = dense.logits.clone().requires_grad_(True)
    y = dense.labels.clone().requires_grad_(True)
    y_native = dense.labels.clone().requires_grad_(True)
    captured = {"dense": dense.labels, "sparse": sparse.labels}
    outputs = _compiled()(y, y_native, sparse.labels, x, captured)
    names = [*FUNCTIONS, "dense captured", "sparse captured"] + [f"torch {n}" for n in FUNCTIONS]
    labels_of = {"dense": y, "torch dense": y_native}
    results = {}
    for name, out in zip(names, outputs, strict=True):
        weights = case(name.split()[-1] if name.startswith("torch") else name.split()[0]).weights
        inputs = [x] + ([labels_of[name]] if name in labels_of else [])
        grads = torch.autograd.grad((out * weights).sum(), inputs, retain_graph=True)
        results[name] = (out.detach(), *grads)
    return results


def test_compile_fullgraph_equals_torch_on_finite_inputs() -> None:
    results = _compile_results(finite)
    for name in FUNCTIONS:
        ours, theirs = results[name], results[f"torch {name}"]
        for mine, native in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine, native, rtol=1e-12, atol=1e-12)
    for name in LOSSES:  # captured labels: the same values and logits gradients
        for captured, passed in zip(results[f"{name} captured"], results[name][:2], strict=True):
            torch.testing.assert_close(captured, passed, rtol=0, atol=0)


def test_compile_fullgraph_is_exact_on_masked_classes() -> None:
    results = _compile_results(masked)
    for name in FUNCTIONS:
        p = masked(name)
        a = _rows(name, p.labels.numpy(), p.logits.numpy(), p.weights.numpy())
        expected = [a["value"], np.tensordot(p.weights.numpy(), a["J"], a["J"].ndim - 2)]
        if name == "dense":
            expected.append(np.tensordot(p.weights.numpy(), a["Jy"], 1))
        for key in [name] + ([f"{name} captured"] if name in LOSSES else []):
            for mine, value in zip(results[key], expected, strict=False):
                np.testing.assert_allclose(mine.numpy(), value, rtol=1e-12, atol=1e-12)
    assert results["torch dense"][0].isnan().all()  # torch's own formula: 0 * -inf


def test_compile_out_of_range_labels_give_nan_rows_without_a_graph_break() -> None:
    # while dynamo traces, label values are not read: out-of-range rows are NaN
    sparse = torch.compile(XENT["sparse"], fullgraph=True, backend="aot_eager")
    loss = sparse(torch.tensor([1, 3, -1, 0]), torch.zeros(4, 3, dtype=torch.float64))
    assert loss.isnan().tolist() == [False, True, True, False]
    torch.testing.assert_close(loss[[0, 3]], torch.full((2,), np.log(3), dtype=torch.float64))


def test_compile_fullgraph_as_the_first_xent_call_of_the_process() -> None:
    # dispatch's cold path (importing the torch backend) must not break dynamo's graph
    code = textwrap.dedent(
        """
        import sys
        import torch
        import xent
        assert "xent.backends._torch" not in sys.modules

        def losses(y, i, x):
            return (xent.softmax_cross_entropy_with_logits(labels=y, logits=x).sum()
                    + xent.sparse_softmax_cross_entropy_with_logits(labels=i, logits=x).sum()
                    + (xent.log_softmax(x) * y).sum() + (xent.softmax(x) * y).sum())

        x = torch.tensor([[0.5, 1.5, float("-inf")], [2.2, 1.3, 1.7]], requires_grad=True)
        y, i = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]), torch.tensor([1, 2])
        compiled = torch.compile(losses, fullgraph=True, backend="aot_eager")
        (grad,) = torch.autograd.grad(compiled(y, i, x), x)
        (eager,) = torch.autograd.grad(losses(y, i, x), x)
        assert torch.isfinite(grad).all() and torch.allclose(grad, eager), (grad, eager)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# -- the conformance hooks in every mode (the catalog itself runs in test_conformance) -----
TB = xent.backends.get("torch")


@pytest.mark.parametrize("mode", TB.modes + TB.transform_modes)
def test_conformance_hooks_are_exact_on_masked_classes(mode: str) -> None:
    from xent.conformance.runner import functions  # the runner's calls: compiled code is shared

    fns = functions("masked", "float32", TB)  # the plain calls (axis -1, no options)
    d, s = masked("dense"), masked("sparse")
    y, x, index = (t.numpy() for t in (d.labels, d.logits, s.labels))
    y32, x32, v32, vy32 = (a.astype(np.float32) for a in (y, x, d.v.numpy(), d.v_labels.numpy()))
    close = functools.partial(np.testing.assert_allclose, rtol=2e-6, atol=2e-6)
    for name, key in (("log_softmax", "log_softmax"), ("softmax", "softmax")):
        a = _rows(name, y, x, np.zeros(x.shape))
        close(TB.run(mode, fns[key], x32), a["value"])
        value, tangent = TB.jvp(mode, fns[key], (x32,), (v32,))
        close(value, a["value"])
        close(tangent, np.tensordot(a["J"], d.v.numpy(), 2))
    for name, key, labels in (("dense", "loss", y), ("sparse", "sparse_loss", index)):
        a = _rows(name, labels, x, np.ones(2))
        labels_in = y32 if name == "dense" else labels
        close(TB.run(mode, fns[key], labels_in, x32), a["value"])
        value, dlabels, dlogits = TB.value_and_grad(mode, fns[key], labels_in, x32)
        close(value, a["value"])
        close(dlogits, a["J"].sum(0))
        if name == "dense":
            assert dlabels is not None
            close(dlabels, a["Jy"].sum(0))  # +inf at the masked classes
        else:
            assert dlabels is None
        tangents = (vy32, v32) if name == "dense" else (None, v32)
        value, tangent = TB.jvp(mode, fns[key], (labels_in, x32), tangents)
        with np.errstate(invalid="ignore"):  # a label tangent of 0 at a masked class adds 0
            label_part = np.where(vy32 == 0, 0, a["Jy"].sum(0) * vy32).sum(1)
        close(value, a["value"])
        close(tangent, np.tensordot(a["J"], d.v.numpy(), 2) + (label_part if name == "dense"
                                                                else 0))


def test_vmap_mode_raises_when_batch_entries_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    from xent.backends import _torch_modes

    def unequal(mode: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.stack([t, t + 1]) for t in tensors]

    monkeypatch.setattr(_torch_modes, "_batch", unequal)
    with pytest.raises(AssertionError, match="batch entry 1 differs"):
        TB.run("vmap", lambda x: x + xent.softmax(x), np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("how", ["forward_ad", "func.jvp", "compile(func.jvp)"])
def test_a_label_tangent_at_a_masked_class_is_infinite(how: str) -> None:
    # d loss / d labels_c = lse - x_c = +inf at a masked class: a tangent there is +-inf
    # (0 where the tangent is 0), also where torch.compile differentiates plain ops
    p = masked("dense")
    dy = torch.zeros_like(p.labels)
    dy[0, 2], dy[1, 1] = 0.5, -1e-300  # two masked classes; row 1's other one stays 0

    def jvp(y: torch.Tensor, x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        f = XENT["dense"]
        if how == "forward_ad":
            with forward_ad.dual_level():
                return forward_ad.unpack_dual(f(forward_ad.make_dual(y, dy), x)).tangent
        return torch.func.jvp(f, (y, x), (dy, torch.zeros_like(x)))[1]

    if how.startswith("compile"):
        jvp = torch.compile(jvp, fullgraph=True, backend="aot_eager")
    assert jvp(p.labels, p.logits, dy).tolist() == [INF, -INF]
    assert jvp(p.labels, p.logits, torch.zeros_like(dy)).tolist() == [0.0, 0.0]
