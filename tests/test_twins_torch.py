"""``xent.compat.torch``: torch's ``F.cross_entropy`` / ``CrossEntropyLoss`` / softmax on every
backend, equal to torch's own (values and gradients) on torch tensors.

Cases follow torch's own tests: the OpInfo ``sample_inputs_cross_entropy`` (shapes
``[N, C]`` to ``[N, C, d1, d2, d3]``, each reduction, ``weight``, ``ignore_index=1``, index
and probability targets) and ``test_nn``'s cross-entropy tests (label smoothing with weights
and ignored indices, the denominators of ``mean``, the deprecated ``size_average`` /
``reduce``, unbatched ``[C]`` input).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from twins_support import as_numpy, assert_signature, close

from xent.compat.torch import nn as twin_nn
from xent.compat.torch.nn import functional as twin_F

torch = pytest.importorskip("torch", reason="the native comparison needs torch")
F = torch.nn.functional


def _case(shape: tuple[int, ...], probabilities: bool = False, seed: int = 0,
          ignore: tuple[int, int] | None = None, **kwargs: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-9, 9, shape).astype(np.float32)
    classes = shape[0] if len(shape) == 1 else shape[1]
    if probabilities:
        target = rng.uniform(0, 1, shape).astype(np.float32)
    else:
        target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
        target = rng.integers(0, classes, target_shape)
        if ignore is not None:  # (flat position, value): a row carrying ignore_index
            target.reshape(-1)[ignore[0]] = ignore[1]
    if "weight" in kwargs and kwargs["weight"] is True:
        kwargs["weight"] = rng.uniform(0.5, 1, classes).astype(np.float32)
    return dict(logits=logits, target=target, kwargs=kwargs)


CASES = {
    # OpInfo sample_inputs_cross_entropy
    **{f"{'x'.join(map(str, s))}-{t}": _case(s, t == "probs")
       for s in [(2, 3), (2, 3, 1), (2, 3, 1, 2), (2, 3, 1, 2, 3)] for t in ("index", "probs")},
    **{f"{r}-{t}": _case((2, 3), t == "probs", reduction=r)
       for r in ("mean", "sum", "none") for t in ("index", "probs")},
    **{f"weight-{r}-{t}": _case((2, 3), t == "probs", seed=1, weight=True, reduction=r)
       for r in ("mean", "sum", "none") for t in ("index", "probs")},
    "ignore_index=1": _case((5, 3), seed=2, ignore=(0, 1), ignore_index=1),
    # test_nn: smoothing with weights and ignored rows, every reduction
    **{f"smooth-{e}-weight-ignore-{r}": _case((6, 4, 2), seed=3, ignore=(3, -100), weight=True,
                                              label_smoothing=e, reduction=r)
       for e in (0.05, 0.15) for r in ("mean", "sum", "none")},
    "smooth-probs-weight": _case((4, 5), True, seed=4, weight=True, label_smoothing=0.3),
    "ignore=-2": _case((4, 3), seed=5, ignore=(1, -2), ignore_index=-2),
    "ignore=C (out of range)": _case((4, 2), seed=6, ignore=(2, 2), ignore_index=2,
                                     reduction="sum"),
    "default -100 present": _case((8, 5), seed=7, ignore=(4, -100)),
    "weight-default -100": _case((8, 5), seed=8, ignore=(0, -100), weight=True),
    "unbatched [C]": _case((7,), seed=9),
    "unbatched [C] probs": _case((7,), True, seed=9, reduction="sum"),
    "size_average=False": _case((3, 4), seed=10, size_average=False),
    "reduce=False": _case((3, 4), seed=10, reduce=False),
    "size_average=True,reduce=True": _case((3, 4), True, seed=11, size_average=True,
                                           reduce=True),
    "float64": dict(_case((3, 4), seed=12), logits=_case((3, 4), seed=12)["logits"]
                    .astype(np.float64)),
}


def _torch_kwargs(kwargs: dict[str, Any], dtype: Any) -> dict[str, Any]:
    return {k: torch.tensor(v, dtype=dtype) if isinstance(v, np.ndarray) else v
            for k, v in kwargs.items()}


def native(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """torch's loss and its gradient with respect to the logits."""
    x = torch.tensor(case["logits"], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = F.cross_entropy(x, torch.tensor(case["target"]),
                               **_torch_kwargs(case["kwargs"], x.dtype))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return as_numpy(loss), as_numpy(grad)


@pytest.mark.parametrize(("twin", "original"), [
    (twin_F.cross_entropy, F.cross_entropy), (twin_F.softmax, F.softmax),
    (twin_F.log_softmax, F.log_softmax),
    (twin_nn.CrossEntropyLoss.__init__, torch.nn.CrossEntropyLoss.__init__),
    (twin_nn.CrossEntropyLoss.forward, torch.nn.CrossEntropyLoss.forward),
])
def test_signature_is_torch(twin: Any, original: Any) -> None:
    assert_signature(twin, original)


@pytest.mark.parametrize("name", list(CASES))
def test_equals_torch_on_torch_tensors(name: str) -> None:
    case = CASES[name]
    x = torch.tensor(case["logits"], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = twin_F.cross_entropy(x, torch.tensor(case["target"]),
                                    **_torch_kwargs(case["kwargs"], x.dtype))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert isinstance(loss, torch.Tensor) and loss.dtype == x.dtype
    value, expected_grad = native(case)
    eps = float(np.finfo(case["logits"].dtype).eps)
    close(as_numpy(loss), value, eps)
    close(as_numpy(grad), expected_grad, eps)


def test_module_equals_torch_module() -> None:
    case = CASES["smooth-0.15-weight-ignore-mean"]
    kwargs = _torch_kwargs(case["kwargs"], torch.float32)
    x, t = torch.tensor(case["logits"]), torch.tensor(case["target"])
    close(as_numpy(twin_nn.CrossEntropyLoss(**kwargs)(x, t)),
          as_numpy(torch.nn.CrossEntropyLoss(**kwargs)(x, t)))
    with pytest.warns(UserWarning, match="reduction='sum'"):
        summed = twin_nn.CrossEntropyLoss(size_average=False)
    assert summed.reduction == "sum"


@pytest.mark.parametrize("name", ["2x3x1x2-index", "weight-mean-probs",
                                  "smooth-0.15-weight-ignore-mean",
                                  "unbatched [C]"])
def test_every_backend_gives_torchs_numbers(target: Any, name: str) -> None:
    case = CASES[name]
    value, grad = native(case)

    def loss(target_: Any, logits: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return twin_F.cross_entropy(logits, target_, **case["kwargs"])

    if not target.backend.has_autodiff:
        close(target.run(lambda y, x: loss(y, x), case["target"], case["logits"]), value)
        return
    got, _, got_grad = target.value_and_grad(loss, case["target"], case["logits"])
    close(got, value)
    close(got_grad, grad)


def test_masked_class_is_finite_where_torch_gives_nan() -> None:
    """The one documented difference: probability 0 at a ``-inf`` logit adds 0."""
    x = torch.tensor([[0.5, -float("inf"), 1.0]], requires_grad=True)
    p = torch.tensor([[0.25, 0.0, 0.75]])
    assert torch.isnan(F.cross_entropy(x, p))
    loss = twin_F.cross_entropy(x, p)
    (grad,) = torch.autograd.grad(loss, x)
    expected = -(p[:, [0, 2]] * torch.log_softmax(x.detach()[:, [0, 2]], 1)).sum()
    close(as_numpy(loss), as_numpy(expected))
    assert torch.isfinite(grad).all()


def test_all_rows_ignored_mean_is_nan_like_torch() -> None:
    x, t = torch.randn(3, 4), torch.full((3,), -100)
    assert torch.isnan(F.cross_entropy(x, t)) and torch.isnan(twin_F.cross_entropy(x, t))


def test_softmax_and_log_softmax_equal_torch() -> None:
    x = torch.tensor(np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32))
    for dim in (0, 1, 2, -1):
        close(as_numpy(twin_F.softmax(x, dim)), as_numpy(F.softmax(x, dim)))
        close(as_numpy(twin_F.log_softmax(x, dim=dim)), as_numpy(F.log_softmax(x, dim=dim)))
    out = twin_F.log_softmax(x, 1, dtype=torch.float64)
    assert out.dtype == torch.float64
    close(as_numpy(out), as_numpy(F.log_softmax(x, 1, dtype=torch.float64)))
    with pytest.warns(UserWarning, match="Implicit dimension"):
        implicit = twin_F.softmax(x)  # torch's deprecated choice: dim 0 for a 3-D input
    with pytest.warns(UserWarning):
        close(as_numpy(implicit), as_numpy(F.softmax(x)))


def test_errors_are_torchs() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="elementwise_mean is not a valid value"):
        twin_F.cross_entropy(x, [0, 1], reduction="elementwise_mean")
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        twin_F.cross_entropy(x, np.full((2, 3), 1 / 3, np.float32), ignore_index=0)
