"""The torch backend: native results, the masked-class fix, autograd, conversion, dispatch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import xent
from xent import _api
from xent.backends import _torch_context
from xent.compat.v1 import nn as v1

TB = xent.backends.get("torch")
NB = xent.backends.get("numpy")
INF, NAN = float("inf"), float("nan")
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# float16/bfloat16 round the float32 result once; float32 differs from the reference's
# log1p formulation by a few eps of logsumexp.
RTOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 2e-6, torch.float64: 1e-13}

dense = xent.softmax_cross_entropy_with_logits
sparse = xent.sparse_softmax_cross_entropy_with_logits


def _masked() -> tuple[torch.Tensor, torch.Tensor]:
    """The masked-class example: labels [0, 1, 0] at logits [0.5, 1.5, -inf]."""
    return torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.5, 1.5, -INF]])


def _np(x: torch.Tensor) -> np.ndarray:
    return TB.to_numpy(x).astype(np.float64)


# -- results stay native ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_native_tensor_out_on_the_input_device_and_dtype(dtype: torch.dtype, device: str) -> None:
    # "meta" stands in for an accelerator: it has no values, so any host sync would raise.
    logits = torch.randn(4, 5, 3).to(device=device, dtype=dtype)
    labels = torch.rand(4, 5, 3).to(device=device, dtype=dtype)
    index = torch.randint(0, 5, (4, 3)).to(device)
    results = [
        xent.softmax(logits, 1), xent.log_softmax(logits, 1),
        dense(labels=labels, logits=logits, axis=1),
        dense(labels=np.ones((4, 5, 3)), logits=logits, axis=1, reduction="mean"),
        sparse(labels=index, logits=logits, axis=1),
        sparse(labels=[[1, 2, 3]] * 4, logits=logits, axis=1, reduction="sum"),
    ]
    shapes = [(4, 5, 3), (4, 5, 3), (4, 3), (), (4, 3), ()]
    for result, shape in zip(results, shapes, strict=True):
        assert isinstance(result, torch.Tensor)
        assert (result.device.type, result.dtype, tuple(result.shape)) == (device, dtype, shape)


def test_half_precision_is_computed_in_float32() -> None:
    logits = torch.tensor([[1000.0, 1000.5, 999.0], [-3.0, 4.0, 0.25]], dtype=torch.bfloat16)
    labels = torch.tensor([[0.25, 0.5, 0.25], [1.0, 0.0, 0.0]], dtype=torch.bfloat16)
    expected = dense(labels=labels.float(), logits=logits.float()).to(torch.bfloat16)
    assert torch.equal(dense(labels=labels, logits=logits), expected)


def test_inputs_are_not_modified() -> None:
    labels, logits = torch.rand(3, 4), torch.randn(3, 4)
    before = labels.clone(), logits.clone()
    dense(labels=labels, logits=logits)
    sparse(labels=torch.tensor([0, 3, 1]), logits=logits)
    assert torch.equal(labels, before[0]) and torch.equal(logits, before[1])


# -- semantics ----------------------------------------------------------------------------
def test_masked_class_value_and_gradients_are_finite_and_analytic() -> None:
    labels, logits = _masked()
    labels.requires_grad_(True)
    logits.requires_grad_(True)
    loss = dense(labels=labels, logits=logits)
    torch.testing.assert_close(loss, torch.tensor([0.3132617]))
    assert torch.isnan(torch.nn.functional.cross_entropy(logits, labels, reduction="none")).all()
    dlabels, dlogits = torch.autograd.grad(loss.sum(), (labels, logits))
    lse = torch.logsumexp(logits.detach(), -1, keepdim=True)
    softmax = torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(dlogits, softmax * labels.sum() - labels.detach())
    assert torch.isfinite(dlogits).all() and dlogits[0, 2] == 0
    torch.testing.assert_close(dlabels, lse - logits.detach())  # +inf at the masked class
    assert dlabels[0, 2] == INF


def test_masked_class_agrees_with_every_target(target) -> None:
    labels = np.array([[0.0, 1.0, 0.0], [0.2, 0.8, 0.0]], np.float32)
    logits = np.array([[0.5, 1.5, -np.inf], [2.2, 1.3, -np.inf]], np.float32)

    def loss(y: object, x: object) -> object:
        return dense(labels=y, logits=x)

    np.testing.assert_allclose(TB.run("eager", loss, labels, logits),
                               target.run(loss, labels, logits), rtol=1e-6)
    if target.backend.has_autodiff:
        ours = TB.value_and_grad("eager", loss, labels, logits)
        theirs = target.value_and_grad(loss, labels, logits)
        for mine, other in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(mine, other, rtol=1e-6)


def test_masked_class_with_a_nonzero_label_is_inf() -> None:
    loss = dense(labels=[[0.0, 0.5, 0.5]], logits=torch.tensor([[0.5, 1.5, -INF]]))
    assert loss.item() == INF


@pytest.mark.parametrize(
    "bad_row",
    [[1.0, NAN, 2.0], [1.0, INF, 2.0], [-INF, -INF, -INF], [NAN, -INF, INF]],
    ids=["nan", "+inf", "all -inf", "mixed"],
)
def test_a_bad_row_is_nan_and_only_that_row(bad_row: list[float]) -> None:
    logits = torch.tensor([[0.5, 1.5, -INF], bad_row, [0.1, 0.2, 0.3]], requires_grad=True)
    labels = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.3, 0.5]])
    outputs = {
        "dense": dense(labels=labels, logits=logits),
        "sparse": sparse(labels=torch.tensor([1, 2, 0]), logits=logits),
        "softmax": xent.softmax(logits),
        "log_softmax": xent.log_softmax(logits),
    }
    for name, out in outputs.items():
        nan = out.isnan() if out.ndim == 1 else out.isnan().all(-1)
        assert nan.tolist() == [False, True, False], name
        assert not out[[0, 2]].isnan().any(), name
    (dlogits,) = torch.autograd.grad(outputs["dense"][[0, 2]].sum(), logits)
    assert torch.isfinite(dlogits[[0, 2]]).all()


def test_nan_labels_give_nan_for_their_row_only() -> None:
    logits = torch.tensor([[0.5, 1.5, -INF]] * 2)
    loss = dense(labels=[[0.0, NAN, 1.0], [0.0, 1.0, 0.0]], logits=logits)
    assert loss.isnan().tolist() == [True, False]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_values_match_the_numpy_reference(dtype: torch.dtype, axis: int) -> None:
    rng = np.random.default_rng(axis + 7)
    logits = rng.normal(size=(3, 5, 4)) * 4
    logits[0, 1, 2] = -np.inf  # a masked class in every layout
    labels = rng.random(size=logits.shape) * (rng.random(size=logits.shape) > 0.3)
    labels[logits == -np.inf] = 0.0
    index = rng.integers(0, logits.shape[axis], size=np.delete(logits.shape, axis))
    x = torch.from_numpy(logits).to(dtype)
    y = torch.from_numpy(labels).to(dtype)
    xn, yn = TB.to_numpy(x), TB.to_numpy(y)  # the reference sees the same rounded inputs
    pairs = [
        (xent.softmax(x, axis), NB.softmax(xn, axis % 3)),
        (xent.log_softmax(x, axis), NB.log_softmax(xn, axis % 3)),
        (dense(labels=y, logits=x, axis=axis),
         NB.softmax_cross_entropy_with_logits(yn, xn, axis % 3)),
        (sparse(labels=torch.from_numpy(index), logits=x, axis=axis),
         NB.sparse_softmax_cross_entropy_with_logits(index, xn, axis % 3)),
    ]
    for ours, reference in pairs:
        assert ours.dtype == dtype
        np.testing.assert_allclose(_np(ours), reference.astype(np.float64),
                                   rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_confident_rows_are_accurate_to_a_few_eps_of_their_scale(dtype: torch.dtype) -> None:
    """torch's own accuracy, kept for speed: a few eps of ``|lse| + |x_label|`` (the loss's
    scale), not of the loss itself (``relative_accuracy`` is False, unlike NumPy's)."""
    assert TB.relative_accuracy is False
    rng = np.random.default_rng(5)
    logits = rng.uniform(-11.5, -10.5, size=(6, 10))
    index = rng.integers(0, 10, 6)
    logits[np.arange(6), index] = 10.0  # loss ~ 7e-9
    x = torch.from_numpy(logits).to(dtype).requires_grad_(True)
    xn = TB.to_numpy(x.detach()).astype(np.float64)
    exact = NB.sparse_softmax_cross_entropy_with_logits(index, xn, 1)
    scale = np.abs(xn).max(axis=1) + np.abs(xn[np.arange(6), index])
    loss = sparse(labels=torch.from_numpy(index), logits=x)
    assert (np.abs(_np(loss) - exact) <= 8 * torch.finfo(dtype).eps * scale).all()
    (dlogits,) = torch.autograd.grad(loss.sum(), x)
    one_hot = torch.eye(10, dtype=dtype)[index]
    torch.testing.assert_close(dlogits, torch.softmax(x.detach(), 1) - one_hot)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_sparse_equals_dense_one_hot_and_moveaxis(axis: int) -> None:
    logits = torch.randn(4, 6, 5, dtype=torch.float64)
    logits[1, 2, 3] = -INF
    index = torch.randint(0, logits.shape[axis], tuple(np.delete(logits.shape, axis)))
    one_hot = torch.nn.functional.one_hot(index, logits.shape[axis]).movedim(-1, axis)
    sparse_loss = sparse(labels=index, logits=logits, axis=axis)
    torch.testing.assert_close(sparse_loss, dense(labels=one_hot, logits=logits, axis=axis))
    torch.testing.assert_close(
        sparse_loss, sparse(labels=index, logits=logits.movedim(axis, -1), axis=-1)
    )


def test_rank_one_logits_and_scalar_label() -> None:
    logits = torch.tensor([0.5, 1.5, 0.1])
    torch.testing.assert_close(sparse(labels=1, logits=logits), torch.tensor(0.4790107))
    torch.testing.assert_close(dense(labels=[0, 1, 0], logits=logits), torch.tensor(0.4790107))


# -- sparse labels out of range -----------------------------------------------------------
@pytest.mark.parametrize("bad", [3, -1, -100])
def test_out_of_range_label_is_a_value_error_on_cpu(bad: int) -> None:
    logits = torch.randn(2, 3)
    for labels in (torch.tensor([0, bad]), np.array([0, bad]), torch.tensor([0, bad]).int()):
        with pytest.raises(ValueError, match=rf"sparse label {bad} is out of range \[0, 3\)"):
            sparse(labels=labels, logits=logits)


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64"]
)
def test_every_integer_label_dtype(dtype: str) -> None:
    logits = torch.tensor([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
    labels = torch.from_numpy(np.array([1, 2], dtype))
    torch.testing.assert_close(sparse(labels=labels, logits=logits),
                               torch.tensor([0.4790107, 1.19967598]))
    with pytest.raises(ValueError, match="sparse label 100 is out of range"):
        sparse(labels=torch.from_numpy(np.array([1, 100], dtype)), logits=logits)


def test_out_of_range_label_is_nan_where_values_stay_on_the_device(monkeypatch) -> None:
    # Off the CPU (and while torch.compile traces) nothing reads label values on the host:
    # the kernel marks out-of-range rows NaN instead of a device-side assert.
    monkeypatch.setattr(_torch_context, "host_values", lambda x: None)
    logits = torch.tensor([[0.5, 1.5, 0.1]] * 4)
    loss = sparse(labels=torch.tensor([1, 3, -100, -1]), logits=logits)
    assert loss.isnan().tolist() == [False, True, True, True]
    torch.testing.assert_close(loss[0], torch.tensor(0.4790107))


# -- autograd -----------------------------------------------------------------------------
def test_label_gradient_flows_in_xent_and_stops_in_compat_v1() -> None:
    labels, logits = torch.rand(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    (dlabels,) = torch.autograd.grad(dense(labels=labels, logits=logits).sum(), labels)
    torch.testing.assert_close(dlabels, torch.logsumexp(logits, -1, keepdim=True) - logits)
    loss = v1.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    dlabels, dlogits = torch.autograd.grad(loss.sum(), (labels, logits), allow_unused=True)
    assert dlabels is None and dlogits is not None
    value, dlabels_v1, _ = TB.value_and_grad(
        "eager", lambda y, x: v1.softmax_cross_entropy_with_logits(labels=y, logits=x),
        np.eye(3)[:2], np.zeros((2, 3)),
    )
    assert dlabels_v1 is None and value.shape == (2,)


def test_gradcheck_float64() -> None:
    labels = torch.rand(3, 4, 2, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 4, (3, 2))

    def dense_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return dense(labels=y, logits=x, axis=1)

    assert torch.autograd.gradcheck(dense_loss, (labels, logits))
    assert torch.autograd.gradgradcheck(dense_loss, (labels, logits))  # double backward
    assert torch.autograd.gradcheck(lambda x: sparse(labels=index, logits=x, axis=1), (logits,))


def test_torch_func_transforms() -> None:
    labels = torch.softmax(torch.randn(4, 2, 3, dtype=torch.float64), -1)
    logits = torch.randn(4, 2, 3, dtype=torch.float64)
    logits[0, 0, 2], labels[0, 0, 2] = -INF, 0.0

    def loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return dense(labels=y, logits=x).sum()

    dlabels, dlogits = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)))(labels, logits)
    softmax = torch.softmax(logits, -1)
    torch.testing.assert_close(dlogits, softmax * labels.sum(-1, keepdim=True) - labels)
    torch.testing.assert_close(dlabels, torch.logsumexp(logits, -1, keepdim=True) - logits)
    # Under vmap the labels are still on the host (eager, CPU): out of range is a ValueError.
    index = torch.tensor([[0, 1]] * 3 + [[3, 1]])
    with pytest.raises(ValueError, match=r"sparse label 3 is out of range \[0, 3\)"):
        torch.func.vmap(lambda i, x: sparse(labels=i, logits=x))(index, logits)


def test_gradients_in_half_precision_come_back_in_the_input_dtype() -> None:
    logits = torch.tensor([[0.5, 1.5, -INF]], dtype=torch.bfloat16, requires_grad=True)
    labels = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.bfloat16, requires_grad=True)
    dlabels, dlogits = torch.autograd.grad(dense(labels=labels, logits=logits).sum(),
                                           (labels, logits))
    assert dlogits.dtype == dlabels.dtype == torch.bfloat16
    assert torch.isfinite(dlogits).all() and dlabels[0, 2] == INF


def test_value_and_grad_hook() -> None:
    labels, logits = np.array([[0.0, 1.0, 0.0]]), np.array([[0.5, 1.5, -np.inf]])
    value, dlabels, dlogits = TB.value_and_grad(
        "eager", lambda y, x: dense(labels=y, logits=x), labels, logits)
    np.testing.assert_allclose(value, [0.3132617], rtol=1e-6)
    assert dlabels is not None
    np.testing.assert_allclose(dlabels, np.array([[1.3132617, 0.3132617, np.inf]]), rtol=1e-6)
    np.testing.assert_allclose(dlogits, [[0.2689414, -0.2689414, 0.0]], rtol=1e-6)
    _, dlabels, dlogits = TB.value_and_grad(
        "eager", lambda y, x: sparse(labels=y, logits=x), np.array([1]), logits)
    assert dlabels is None
    np.testing.assert_allclose(dlogits, [[0.2689414, -0.2689414, 0.0]], rtol=1e-6)


# -- conversion ---------------------------------------------------------------------------
def test_conversion_helpers() -> None:
    import ml_dtypes

    like = torch.zeros(2, device="meta")
    converted = TB.asarray(np.array([1, 2]), like=like, dtype="bfloat16")
    assert (converted.device.type, converted.dtype) == ("meta", torch.bfloat16)
    from_bf16 = TB.asarray(np.array([1.5, 2.0], dtype=ml_dtypes.bfloat16))
    assert from_bf16.dtype == torch.bfloat16 and from_bf16.tolist() == [1.5, 2.0]
    assert TB.asarray(np.arange(6)[::-1], dtype="int64").tolist() == [5, 4, 3, 2, 1, 0]
    assert TB.asarray([[1, 0]], dtype="float32").dtype == torch.float32
    assert [TB.dtype_name(torch.zeros(1, dtype=d)) for d in DTYPES] == [
        "float16", "bfloat16", "float32", "float64"]
    assert TB.dtype_name(torch.zeros(1, dtype=torch.int32)) == "int32"
    back = TB.to_numpy(torch.tensor([1.5], dtype=torch.bfloat16, requires_grad=True) * 1)
    assert back.dtype == ml_dtypes.bfloat16 and back.tolist() == [1.5]
    assert TB.owns(torch.nn.Parameter(torch.zeros(1))) and not TB.owns(np.zeros(1))
    assert not TB.stop_gradient(torch.zeros(1, requires_grad=True)).requires_grad
    assert TB.first_out_of_range(torch.tensor([[0, 4], [2, 5]]), 4) == 4
    assert TB.first_out_of_range(torch.tensor([0, 3], device="meta"), 2) is None


def test_run_hook_round_trips_numpy() -> None:
    labels = np.array([[0.0, 1.0, 0.0]], np.float32)
    logits = np.array([[0.5, 1.5, -np.inf]], np.float32)
    out = TB.run("eager", lambda y, x: dense(labels=y, logits=x), labels, logits)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.3132617], rtol=1e-6)


# -- dispatch -----------------------------------------------------------------------------
def test_numpy_and_list_labels_are_converted_to_the_logits_framework() -> None:
    logits = torch.tensor([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], dtype=torch.float64)
    expected = torch.tensor([0.4790107, 1.19967598], dtype=torch.float64)
    for dense_labels in ([[0, 1, 0], [0, 0, 1]], np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])):
        torch.testing.assert_close(dense(labels=dense_labels, logits=logits), expected)
    for sparse_labels in ([1, 2], np.array([1, 2], np.int32), (1, 2)):
        torch.testing.assert_close(sparse(labels=sparse_labels, logits=logits), expected)


def test_torch_with_another_framework_is_a_type_error_naming_both() -> None:
    jnp = pytest.importorskip("jax.numpy", reason="the mixed-framework case needs jax")
    logits, labels = torch.zeros(2, 3), jnp.zeros((2, 3))
    with pytest.raises(TypeError, match=r"(?=.*jax)(?=.*torch)"):
        dense(labels=labels, logits=logits)
    with pytest.raises(TypeError, match=r"(?=.*jax)(?=.*torch)"):
        dense(labels=torch.zeros(2, 3), logits=jnp.zeros((2, 3)))


def test_explicit_backend_must_match_a_torch_tensor() -> None:
    with pytest.raises(TypeError, match="torch"):
        xent.softmax(torch.zeros(3), backend="numpy")
    with xent.use_backend("numpy"):
        assert isinstance(xent.softmax(torch.zeros(3)), torch.Tensor)
    with xent.use_backend("torch"):  # framework-neutral logits run on torch
        loss = sparse(labels=[1], logits=np.array([[0.5, 1.5, 0.1]], np.float32))
    assert isinstance(loss, torch.Tensor) and loss.dtype == torch.float32


def test_a_torch_call_imports_neither_tensorflow_nor_jax() -> None:
    code = textwrap.dedent(
        """
        import sys
        import torch
        import xent
        logits = torch.tensor([[0.5, 1.5, float("-inf")]], requires_grad=True)
        loss = xent.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0, 0.0]], logits=logits)
        loss.sum().backward()
        xent.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=logits)
        assert abs(loss.item() - 0.3132617) < 1e-6, loss
        leaked = [m for m in ("tensorflow", "jax") if m in sys.modules]
        assert not leaked, leaked
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_labels_changed_in_place_between_calls_are_checked_again() -> None:
    """The backend remembers which labels it last read on the host (to skip a second look
    at where they live), never their values: the same tensor, changed in place, is
    range-checked again, and a loss computed before is not reused."""
    logits = torch.tensor([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
    labels = torch.tensor([1, 2])
    first = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    labels[1] = 0
    second = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    assert first[1] != second[1] and first[0] == second[0]
    labels[1] = 3
    with pytest.raises(ValueError, match="3"):
        xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


@pytest.mark.parametrize("reduction", ["sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("options", [{}, {"ignore_index": 2}, {"class_weights": True},
                                     {"class_weights": True, "ignore_index": 0,
                                      "label_smoothing": 0.2},
                                     {"label_smoothing": 0.1}])
@pytest.mark.parametrize("layout", ["rows", "axis1"])
def test_reduction_in_torchs_kernel_is_xents(reduction: str, options: dict,
                                              layout: str) -> None:
    """Where torch's kernel reduces (``TorchBackend.sparse_softmax_cross_entropy_reduced``),
    the value and gradient are xent's reductions of the per-row loss: the sum, the mean over
    the rows not ignored, the weighted mean over ``class_weights[label]``."""
    rng = np.random.default_rng(7)
    shape, axis = ((6, 5), -1) if layout == "rows" else ((3, 5, 4), 1)
    x = rng.standard_normal(shape)
    t = rng.integers(0, 5, (3, 4) if layout == "axis1" else 6)
    kwargs = dict(options)
    if kwargs.pop("class_weights", False):
        kwargs["class_weights"] = torch.tensor(rng.uniform(0.5, 2.0, 5))
    logits = torch.tensor(x, requires_grad=True)
    labels = torch.tensor(t)
    got = xent.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, axis=axis, reduction=reduction, **kwargs)
    (grad,) = torch.autograd.grad(got, logits)
    fused = xent.backends.get("torch").sparse_softmax_cross_entropy_reduced(
        labels, logits, axis % len(shape), _api._options(
            xent.backends.get("torch"), logits, shape, "float64", axis % len(shape),
            None, kwargs.get("class_weights"), kwargs.get("label_smoothing", 0.0), None,
            kwargs.get("ignore_index")), reduction)
    assert (fused is None) == (reduction == "mean" and "class_weights" in kwargs)
    rows = xent.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, axis=axis, **kwargs)
    kept = labels != kwargs.get("ignore_index", -1)
    if reduction == "sum":
        want = rows.sum()
    elif reduction == "weighted_mean" and "class_weights" in kwargs:
        want = rows.sum() / (kwargs["class_weights"][labels] * kept).sum()
    else:
        want = rows.sum() / kept.sum()
    (want_grad,) = torch.autograd.grad(want, logits)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-14)
    reference = xent.sparse_softmax_cross_entropy_with_logits(
        labels=t, logits=x, axis=axis, reduction=reduction,
        **{k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})
    np.testing.assert_allclose(got.detach().numpy(), reference, rtol=1e-12)


def test_reduction_of_every_row_ignored_is_nan_and_of_no_rows_nan_or_zero() -> None:
    logits = torch.zeros(3, 4)
    labels = torch.tensor([1, 1, 1])
    mean = xent.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, reduction="mean", ignore_index=1)
    assert mean.isnan()
    empty = torch.zeros(0, 4)
    none = torch.zeros(0, dtype=torch.int64)
    assert xent.sparse_softmax_cross_entropy_with_logits(
        labels=none, logits=empty, reduction="mean").isnan()
    assert xent.sparse_softmax_cross_entropy_with_logits(
        labels=none, logits=empty, reduction="sum") == 0
