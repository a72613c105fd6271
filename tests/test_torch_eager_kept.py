"""torch's one-pass sparse ``where`` (``xent.backends._torch_eager_kept``) against the
composition every backend has (``xent._options``): values and gradients equal to the
dtype's tolerance on batches that pass takes (ignored rows with non-finite logits, an
excluded label, a kept ``-inf`` logit under smoothing, class weights, the class axis in the
middle), exactly 0 where nothing is read, derivatives of derivatives and batched gradients;
a batch with a row that pass cannot take runs the chunked kernel, bit for bit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import xent  # noqa: E402
from xent.backends import _torch_eager_kept  # noqa: E402
from xent.backends._base import Backend  # noqa: E402
from xent.backends._torch import TorchBackend  # noqa: E402

INF, NAN = float("inf"), float("nan")
sparse = xent.sparse_softmax_cross_entropy_with_logits

OPTIONS = {
    "where": {},
    "weights": dict(class_weights="cw", weights="w"),
    "smoothing": dict(label_smoothing=0.1),
    "all": dict(label_smoothing=0.2, class_weights="cw", weights="w"),
}


def _batch(rows: int, classes: int, dtype: torch.dtype) -> dict:
    """A batch the one pass takes: ignored rows (one with NaN and infinities), a label on
    an excluded class, an excluded ``-inf``, a kept ``-inf`` (``+inf`` under smoothing)."""
    g = torch.Generator().manual_seed(rows + classes)
    x = torch.randn(rows, classes, generator=g, dtype=dtype) * 3
    m = torch.rand(rows, classes, generator=g) > 0.2
    t = torch.randint(0, classes, (rows,), generator=g)
    m[torch.arange(rows), t] = True
    t[1], t[2] = -100, -100  # padding ...
    x[1, 0], x[1, 1], x[2, 3] = NAN, INF, -INF  # ... with NaN and infinities
    m[3, t[3]] = False  # the label's class is excluded
    x[4, (t[4] + 1) % classes], m[4, (t[4] + 1) % classes] = -INF, False  # excluded -inf
    x[5, (t[5] + 1) % classes], m[5, (t[5] + 1) % classes] = -INF, True  # kept -inf
    return dict(x=x, m=m, t=t, cw=torch.rand(classes, generator=g, dtype=dtype) + 0.5,
                w=torch.rand(rows, generator=g, dtype=dtype))


def _options(a: dict, option: str) -> dict:
    return dict(where=a["m"], ignore_index=-100,
                **{k: a[v] if isinstance(v, str) else v for k, v in OPTIONS[option].items()})


def _call(a: dict, options: dict, grad: bool, dim: int = 1) -> list:
    x = a["x"].clone().requires_grad_(grad)
    loss = sparse(labels=a["t"], logits=x, axis=dim, **options)
    if not grad:
        return [loss]
    return [loss, *torch.autograd.grad(loss.nansum(), x)]


def _composed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("softmax_cross_entropy_with_options",
                 "sparse_softmax_cross_entropy_with_options"):
        monkeypatch.setattr(TorchBackend, name, getattr(Backend, name))


def _taken(monkeypatch: pytest.MonkeyPatch) -> list:
    """Spy on the one pass: whether each call took it."""
    seen: list = []
    real = _torch_eager_kept._forward

    def spy(*args: object) -> object:
        seen.append(real(*args) is not None)  # type: ignore[arg-type]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_torch_eager_kept, "_forward", spy)
    return seen


def _close(ours: list, theirs: list, exact: bool = False) -> None:
    tolerance = dict(rtol=0, atol=0) if exact else {}
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True, **tolerance)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("shape", [(64, 50), (700, 1000)])  # one chunk; many, the last short
def test_one_pass_equals_the_composition(shape: tuple, option: str, dtype: torch.dtype,
                                         grad: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _batch(*shape, dtype)
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, option), grad)
    assert taken == [True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, _call(a, _options(a, option), grad))
    loss = ours[0]
    assert loss[1] == 0 and loss[2] == 0  # padding, with its NaN and infinities
    assert (loss[3] == 0) == (option in ("where", "weights"))  # smoothing's share stays
    assert torch.isfinite(loss[4])
    assert torch.isinf(loss[5]) == (option in ("smoothing", "all"))
    if grad:
        g = ours[1]
        assert not g[1:3].any()  # ignored rows: exactly 0
        assert not g[~a["m"]].any()  # excluded classes: exactly 0
        if option in ("where", "weights"):
            assert not g[3].any()  # a row that reads nothing


def test_class_axis_in_the_middle(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _batch(64, 50, torch.float64)

    def move(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(2, -1, v.shape[1]).movedim(2, 1).contiguous()

    a = dict(x=move(a["x"]), m=move(a["m"]), t=a["t"].reshape(2, -1), cw=a["cw"],
             w=a["w"].reshape(2, -1))
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, "all"), True)
    assert taken == [True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, _call(a, _options(a, "all"), True))


def test_where_the_same_for_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _batch(700, 1000, torch.float64)
    a["m"] = a["m"][:1]  # broadcast along the rows
    a["x"][4:6] = 0.0  # (their -inf was for the full mask)
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, "all"), True)
    assert taken == [True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, _call(a, _options(a, "all"), True))


@pytest.mark.parametrize("option", ["where", "all"])
def test_derivatives_of_derivatives_and_batched_gradients(
        option: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _batch(64, 50, torch.float64)
    a["x"][5] = 0.0  # no kept -inf: a finite loss to differentiate twice
    probe = torch.linspace(0, 1, 50, dtype=torch.float64)
    cotangents = torch.eye(64, dtype=torch.float64)[:3]

    def second() -> list:
        x = a["x"].clone().requires_grad_(True)
        loss = sparse(labels=a["t"], logits=x, **_options(a, option))
        (g,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g * probe).sum(), x)
        loss = sparse(labels=a["t"], logits=x, **_options(a, option))
        (rows,) = torch.autograd.grad(loss, x, cotangents, is_grads_batched=True)
        return [g, h, rows]

    taken = _taken(monkeypatch)
    ours = second()
    assert taken == [True, True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, second())


def test_a_batch_the_one_pass_cannot_take_runs_the_chunked_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN or an infinity at an excluded class, no class left, an excluded maximum far
    above a confident row: the chunked kernel on the masked logits, bit for bit (without a
    gradient, as with one)."""
    a = _batch(700, 1000, torch.float64)
    t, c = a["t"], 1000
    cases = []
    for row in range(6, 9):
        b = {k: v.clone() for k, v in a.items()}
        if row == 6:
            b["x"][6, (t[6] + 1) % c], b["m"][6, (t[6] + 1) % c] = NAN, False
        elif row == 7:
            b["m"][7] = False
        else:
            b["x"][8] = -40.0
            b["x"][8, t[8]], b["x"][8, (t[8] + 1) % c] = 0.0, 60.0
            b["m"][8, (t[8] + 1) % c] = False
        cases.append(b)
    for b in cases:
        for option in ("where", "all"):
            taken = _taken(monkeypatch)
            values = _call(b, _options(b, option), False)
            chunked = _call(b, _options(b, option), True)
            assert taken == [False, False]
            _close(values, chunked[:1], exact=True)
            monkeypatch.undo()
            _composed(monkeypatch)
            _close(chunked, _call(b, _options(b, option), True))
            monkeypatch.undo()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """16-bit logits: computed in float32 and within an eps (of the dtype) of the exact
    answer for the same inputs, relative to each row's scale."""
    a = _batch(64, 50, dtype)
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, "all"), True)
    assert taken == [True]
    wide = {k: v.double() if v.is_floating_point() else v for k, v in a.items()}
    truth = _call(wide, _options(wide, "all"), True)
    eps = torch.finfo(dtype).eps
    for got, want in zip(ours, truth, strict=True):
        assert got.dtype == dtype
        want = want.to(dtype).double()
        scale = want.nan_to_num(0.0, 0.0, 0.0).abs().amax(-1, keepdim=True).clamp_min(1.0)
        torch.testing.assert_close(got.double(), want, equal_nan=True, rtol=0,
                                   atol=(2 * eps * scale).expand_as(want).amax().item())
