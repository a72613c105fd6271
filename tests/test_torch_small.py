"""The public functions' fast path for small plain torch calls (``_torch_small``): where it
answers, it answers as the general path does (values, gradients, reductions); where the
arguments are anything but plainly valid, it leaves them to the general path, whose errors
and fixes are unchanged."""

from __future__ import annotations

import re

import pytest
import torch

import xent
from xent.backends import _torch_small as small

dense_call = xent.softmax_cross_entropy_with_logits
sparse_call = xent.sparse_softmax_cross_entropy_with_logits
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]


def _inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 7, generator=g) * 3).to(dtype)
    probs = torch.softmax(torch.randn(5, 7, generator=g), 1).to(dtype)
    return logits, probs, torch.tensor([0, 6, 3, 3, 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("rows", [5, 300])
def test_answers_as_the_general_path(dtype: torch.dtype, reduction: str, axis: int,
                                     rows: int) -> None:
    logits, probs, index = _inputs(dtype)
    if rows > 5:  # sparse labels read by torch's amin; dense: NaN checked by torch
        logits, probs, index = logits.repeat(60, 1), probs.repeat(60, 1), index.repeat(60)
    assert small.sparse(index, logits, axis, reduction) is not None  # the fast path answers
    assert small.dense(probs, logits, axis, reduction) is not None
    for call, labels in ((sparse_call, index), (dense_call, probs)):
        results = []
        for backend in (None, "torch"):  # backend= named: the general path
            x = logits.clone().requires_grad_()
            y = labels.clone().requires_grad_(labels.is_floating_point())
            loss = call(labels=y, logits=x, axis=axis, reduction=reduction, backend=backend)
            grads = torch.autograd.grad(loss.sum(), [x] + ([y] if y.requires_grad else []))
            results.append((loss, grads))
        (fast, fast_grads), (general, general_grads) = results
        assert fast.dtype == dtype and fast.shape == general.shape
        # a dense sum or mean is reduced in torch's kernel (the general path: by loss.sum())
        rtol = 2 * torch.finfo(dtype).eps if call is dense_call and reduction != "none" else 0
        torch.testing.assert_close(fast, general, rtol=rtol, atol=0)
        for a, b in zip(fast_grads, general_grads):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("case", [
    "int32 labels", "list labels", "float16", "axis True", "axis 0", "3-D",
    "65 rows, a label -1", "65 rows, probabilities", "65 rows, int32", "65 rows, 2-D labels",
    "label out of range", "label -100", "2-D labels", "bad reduction", "no classes",
    "rows mismatch", "Parameter labels", "float labels", "bool labels", "0-d labels",
    "unhashable reduction", "one row, no classes", "a label -1", "probabilities",
    "int labels of the logits' shape",
])
def test_leaves_anything_unusual_to_the_general_path(case: str) -> None:
    logits, _, index = _inputs(torch.float32)
    labels, axis, reduction = index, -1, "none"
    if case == "int32 labels":
        labels = index.int()
    elif case == "list labels":
        labels = index.tolist()
    elif case == "float16":
        logits = logits.half()
    elif case == "axis True":
        axis = True
    elif case == "axis 0":
        axis = 0
    elif case == "3-D":
        logits, labels = logits[None], index[None]
    elif case.startswith("65 rows"):  # (read by torch's amin, not on the host)
        logits, labels = torch.randn(65, 3), torch.zeros(65, dtype=torch.int64)
        labels[7] = -1 if case.endswith("-1") else 0
        if case.endswith("probabilities"):  # F would take them for dense labels
            labels = logits.softmax(1)
        elif case.endswith("int32"):
            labels = labels.int()
        elif case.endswith("2-D labels"):
            labels = labels[:, None]
    elif case == "label out of range":
        labels = torch.tensor([0, 7, 0, 0, 0])
    elif case == "label -100":  # torch's kernel would ignore it: xent raises
        labels = torch.tensor([0, -100, 0, 0, 0])
    elif case == "2-D labels":
        labels = index[:, None]
    elif case == "bad reduction":
        reduction = "avg"
    elif case == "no classes":
        logits, labels = torch.randn(0, 0), torch.zeros(0, dtype=torch.int64)
    elif case == "rows mismatch":
        labels = index[:4]
    elif case == "float labels":
        labels = index.float()
    elif case == "bool labels":
        labels = index > 2
    elif case == "0-d labels":
        logits, labels = logits[0], index[0]
    elif case == "unhashable reduction":
        reduction = ["none"]  # type: ignore[assignment]
    elif case == "one row, no classes":
        logits, labels = torch.randn(1, 0), index[:1]
    elif case == "Parameter labels":
        labels = torch.nn.Parameter(logits.softmax(1))
    elif case == "a label -1":  # the kernel's IndexError (only -100 is read on the host)
        labels = torch.tensor([0, -1, 0, 0, 0])
    elif case == "probabilities":  # F would take them for dense labels
        labels = logits.softmax(1)
    elif case == "int labels of the logits' shape":
        labels = torch.zeros(logits.shape, dtype=torch.int64)
    fast = small.dense if case == "Parameter labels" else small.sparse
    assert fast(labels, logits, axis, reduction) is None


@pytest.mark.parametrize(("labels", "error", "message"), [
    (torch.tensor([0, 7, 0, 0, 0]), ValueError, "sparse label 7 is out of range"),
    (torch.tensor([0, -100, 0, 0, 0]), ValueError, "sparse label -100 is out of range"),
    (torch.tensor([0, 1, 2, 3]), ValueError, "labels: shape (4,) does not match"),
    (torch.tensor([0.0, 1, 2, 3, 4]), TypeError, "labels: sparse labels must be integer"),
])
def test_errors_are_the_general_paths(labels: torch.Tensor, error: type, message: str) -> None:
    logits = _inputs(torch.float32)[0]
    many = labels.repeat(20)  # 100 rows and more: labels read by torch's amin
    with pytest.raises(error, match=re.escape(message.replace("(4,)", "(80,)"))):
        sparse_call(labels=many, logits=logits.repeat(20, 1))
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        sparse_call(labels=labels, logits=logits)
    with pytest.raises(ValueError, match="reduction: expected"):
        sparse_call(labels=labels[:0], logits=logits[:0], reduction="avg")
    with pytest.raises(TypeError, match="axis: expected an int"):
        dense_call(labels=logits, logits=logits, axis=True)


def test_a_masked_class_leaves_the_fast_path_for_the_fix() -> None:
    """torch's kernel gives NaN for a zero label at a -inf logit: that call goes on to the
    general path, whose loss and gradient are finite."""
    logits = torch.tensor([[0.0, -float("inf"), 1.0], [2.0, 1.0, 0.0]], requires_grad=True)
    probs = torch.tensor([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    assert small.dense(probs, logits, -1, "none") is None
    loss = dense_call(labels=probs, logits=logits, reduction="sum")
    loss.backward()
    expected = (0.5 * (torch.logsumexp(logits[0], 0) - 0.0)
                + 0.5 * (torch.logsumexp(logits[0], 0) - 1.0)
                + torch.logsumexp(logits[1], 0) - 2.0)
    torch.testing.assert_close(loss, expected)
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 1] == 0


def test_transforms_and_compile_take_the_general_path() -> None:
    """Under torch.func the labels cannot be read as Python ints: the fast path declines,
    and the transform still gets the loss (per-example gradients here)."""
    logits, _, index = _inputs(torch.float32)

    def one(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert small.sparse(t, x[None], -1, "none") is None
        return sparse_call(labels=t[None], logits=x[None], reduction="sum")

    per_example = torch.func.vmap(torch.func.grad(one))(logits, index)
    expected = torch.softmax(logits, 1) - torch.nn.functional.one_hot(index, 7)
    torch.testing.assert_close(per_example, expected)
