"""torch's dense loss without options in plain eager code on the CPU: torch's own kernel up
to ``_torch_eager.NATIVE`` elements (classes on dim 1 or last), the one pass of
``_torch_eager_kept`` above it, the chunked kernel for a batch with a NaN row. Values and
gradients (logits and labels) against the analytic formulas in float64, masked classes (a
zero label at a ``-inf`` logit) finite in every path, the same loss with and without a
gradient, derivatives of derivatives and batched gradients."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import xent  # noqa: E402
from xent.backends import _torch_eager, _torch_eager_kept  # noqa: E402

INF, NAN = float("inf"), float("nan")
dense = xent.softmax_cross_entropy_with_logits
LARGE = (700, 1000)  # above NATIVE: the one pass, in several chunks (the last one short)
MIDDLE = (60, 1000)  # between SMALL and NATIVE: torch's kernel


def _batch(rows: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised labels; row 1 masked classes (label 0 at ``-inf``), row 2 a labelled
    ``-inf`` (loss ``+inf``), row 3 confident."""
    g = torch.Generator().manual_seed(rows * classes)
    x = torch.randn(rows, classes, generator=g, dtype=torch.float64) * 4
    y = torch.rand(rows, classes, generator=g, dtype=torch.float64)
    x[1, ::3], y[1, ::3] = -INF, 0.0
    x[2, 5] = -INF
    x[3], y[3] = 0.0, 0.0
    x[3, 7], y[3, 7] = 12.0, 1.0
    return x, y


def _exact(x: torch.Tensor, y: torch.Tensor, dim: int = 1) -> list:
    """The loss and its gradients ``(softmax * sum(y) - y, lse - x)`` by the formulas."""
    lse = torch.logsumexp(x, dim, keepdim=True)
    loss = torch.where(y == 0, 0.0, y * (lse - x)).sum(dim)
    return [loss, torch.softmax(x, dim) * y.sum(dim, keepdim=True) - y, lse - x]


def _ours(x: torch.Tensor, y: torch.Tensor, dim: int = 1) -> list:
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    loss = dense(labels=y, logits=x, axis=dim)
    return [loss, *torch.autograd.grad(loss.sum(), [x, y])]


def _passes(monkeypatch: pytest.MonkeyPatch) -> list:
    """Spy: which path each call took (``native``, ``one pass``, ``chunked``)."""
    seen: list = []
    for module, name, label in ((_torch_eager, "_native", "native"),
                                (_torch_eager_kept, "_forward", "one pass"),
                                (_torch_eager_kept, "dense_loss", "chunked")):
        real = getattr(module, name)

        def spy(*args: object, _real: object = real, _label: str = label) -> object:
            seen.append(_label)
            return _real(*args)  # type: ignore[operator]

        monkeypatch.setattr(module, name, spy)
    return seen


def _close(ours: list, theirs: list) -> None:
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("shape", [LARGE, MIDDLE])
def test_values_and_gradients_are_the_formulas(shape: tuple,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _batch(*shape)
    seen = _passes(monkeypatch)
    ours = _ours(x, y)
    # the middle batch's masked row is NaN in torch's kernel: the one pass then
    assert seen == (["one pass"] if shape == LARGE else ["native", "one pass"])
    _close(ours, _exact(x, y))
    loss, dx, dy = ours
    assert torch.isfinite(loss[1]) and loss[2] == INF
    assert torch.isfinite(dx).all() and not dx[1, ::3].any()
    assert (dy[1, ::3] == INF).all() and dy[2, 5] == INF
    assert 0 < loss[3] < 1e-2


def test_a_batch_without_masked_classes_is_torchs_own_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _batch(*MIDDLE)
    x, y = x[3:], y[3:]
    seen = _passes(monkeypatch)
    ours = _ours(x, y)
    assert seen == []  # the public call's fast path (_torch_small): the same kernel
    xt, yt = x.clone().requires_grad_(), y.clone().requires_grad_()
    native = torch.nn.functional.cross_entropy(xt, yt, reduction="none")
    want = [native, *torch.autograd.grad(native.sum(), [xt, yt])]
    for a, b in zip(ours, want, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [LARGE, MIDDLE])
def test_classes_on_the_last_of_three_axes(shape: tuple,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _batch(*shape)
    x, y = x[2:].reshape(2, -1, shape[1]), y[2:].reshape(2, -1, shape[1])  # row 3 confident
    seen = _passes(monkeypatch)
    ours = _ours(x, y, dim=-1)
    assert seen == (["one pass"] if shape == LARGE else ["native"])
    _close(ours, _exact(x, y, dim=-1))
    assert ours[0].shape == x.shape[:2]


def test_with_and_without_a_gradient_the_same_loss() -> None:
    x, y = _batch(*LARGE)
    assert torch.equal(dense(labels=y, logits=x), _ours(x, y)[0])


def test_a_nan_row_runs_the_chunked_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _batch(*LARGE)
    x[4, 9] = NAN
    seen = _passes(monkeypatch)
    ours = _ours(x, y)
    assert seen == ["one pass", "chunked"]
    assert torch.isnan(ours[0][4]) and torch.isnan(ours[1][4]).all()
    monkeypatch.undo()
    xc, yc = x.clone().requires_grad_(), y.clone().requires_grad_()
    chunked = _torch_eager.dense_loss(yc, xc, 1)
    want = [chunked, *torch.autograd.grad(chunked.sum(), [xc, yc])]
    for a, b in zip(ours, want, strict=True):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())  # bit for bit
    keep = torch.arange(x.shape[0]) != 4
    _close([t[keep] for t in ours], [t[keep] for t in _exact(x, y)])


def test_derivatives_of_derivatives_and_batched_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _batch(*LARGE)
    x[1, ::3] = x[2, 5] = 0.0  # no -inf: the formula below differentiates twice
    probe = torch.linspace(0, 1, x.shape[1], dtype=torch.float64)
    cotangents = torch.eye(x.shape[0], dtype=torch.float64)[:3]

    def second(loss_of: object) -> list:
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        first = torch.autograd.grad(loss_of(ys, xs).sum(), [xs, ys],  # type: ignore[operator]
                                    create_graph=True)
        (h,) = torch.autograd.grad((first[0] * probe).sum() + (first[1] * probe).sum(), xs)
        rows = torch.autograd.grad(loss_of(ys, xs), [xs, ys],  # type: ignore[operator]
                                   cotangents, is_grads_batched=True)
        return [*first, h, *rows]

    seen = _passes(monkeypatch)
    ours = second(lambda y_, x_: dense(labels=y_, logits=x_))
    assert seen == ["one pass", "one pass"]

    def formula(y_: torch.Tensor, x_: torch.Tensor) -> torch.Tensor:
        return (y_ * (torch.logsumexp(x_, 1, keepdim=True) - x_)).sum(1)

    _close(ours, second(formula))


def test_the_label_gradient_is_relatively_accurate_at_a_confident_maximum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``d/dlabels = lse - x`` at the maximum is ``log(s) - 0``, about 1e-10 here: computed
    as ``r - (x - m)``, not ``(m + r) - x``, which rounds it to the ulps of ``m = 2**20``
    (2.3e-10). (``s = 1 + 9e-11`` itself keeps 5 digits; torch's ``log_softmax`` 4 here.)"""
    top = 2.0**20
    x = torch.full(LARGE, top - 30, dtype=torch.float64)
    x[:, 0] = top
    y = torch.rand(LARGE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = torch.full((LARGE[0],), 999 * math.exp(-30), dtype=torch.float64)
    seen = _passes(monkeypatch)
    for dim in (1, 0):  # classes last, and first
        dy = _ours(x if dim == 1 else x.T, y if dim == 1 else y.T, dim)[2]
        torch.testing.assert_close(dy[:, 0] if dim == 1 else dy[0], want, rtol=1e-4, atol=0)
    assert seen == ["one pass", "one pass"]
