"""torch's chunked loss options (``xent.backends._torch_eager_options``) against the
composition every backend has (``xent._options``): the same numbers, bit for bit, for values
and gradients, including the chunks that fall back to the exact ``where`` (a NaN or
infinity at an excluded class), rows with no class left, ignored rows, the last short
chunk, a class axis that is not the last, 16-bit floats and derivatives of derivatives."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import xent  # noqa: E402
from xent import _options  # noqa: E402
from xent.backends._base import Backend  # noqa: E402
from xent.backends._torch import TorchBackend  # noqa: E402

INF, NAN = float("inf"), float("nan")
dense = xent.softmax_cross_entropy_with_logits
sparse = xent.sparse_softmax_cross_entropy_with_logits


def _inputs(rows: int, classes: int, dtype: torch.dtype = torch.float64) -> dict:
    g = torch.Generator().manual_seed(rows * classes)
    x = torch.randn(rows, classes, generator=g, dtype=dtype)
    y = torch.rand(rows, classes, generator=g, dtype=dtype)
    m = torch.rand(rows, classes, generator=g) > 0.2
    t = torch.randint(0, classes, (rows,), generator=g)
    x[0, 3], y[0, 3] = -INF, 0.0  # a masked class, read
    x[1, 5], m[1, 5] = NAN, False  # NaN at an excluded class: never read
    y[2, 6], m[2, 6] = INF, False  # a non-finite label at an excluded class
    m[3] = False  # no class left: NaN
    x[4, 1] = NAN  # a real NaN row
    m[5, t[5]] = False  # the label's class is excluded: the row reads nothing
    t[6] = -100  # padding
    x[6, 2] = INF  # ... with a non-finite logit
    return dict(x=x, y=y, m=m, t=t, cw=torch.rand(classes, generator=g, dtype=dtype) + 0.5,
                w=torch.rand(rows, generator=g, dtype=dtype))


OPTIONS = {
    "where": lambda a: dict(where=a["m"]),
    "where_row": lambda a: dict(where=a["m"][:1]),  # broadcast along the rows
    "smoothing": lambda a: dict(label_smoothing=0.1),
    "class_weights": lambda a: dict(class_weights=a["cw"]),
    "all": lambda a: dict(where=a["m"], label_smoothing=0.2, class_weights=a["cw"],
                          weights=a["w"]),
}


def _composed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TorchBackend, "softmax_cross_entropy_with_options",
                        Backend.softmax_cross_entropy_with_options)
    monkeypatch.setattr(TorchBackend, "sparse_softmax_cross_entropy_with_options",
                        Backend.sparse_softmax_cross_entropy_with_options)


def _run(kind: str, a: dict, options: dict, dim: int = 1) -> list:
    x = a["x"].clone().requires_grad_(True)
    y = a["y"].clone().requires_grad_(True)
    if kind == "sparse":
        loss = sparse(labels=a["t"], logits=x, axis=dim, ignore_index=-100, **options)
        return [loss, *torch.autograd.grad(loss.nansum(), x)]
    loss = dense(labels=y, logits=x, axis=dim, **options)
    return [loss, *torch.autograd.grad(loss.nansum(), [x, y])]


def _middle(a: dict) -> dict:
    """The inputs as ``[2, classes, rows / 2]``: the class axis in the middle."""
    def move(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(2, -1, v.shape[1]).movedim(2, 1).contiguous()

    return dict(x=move(a["x"]), y=move(a["y"]), m=move(a["m"]), t=a["t"].reshape(2, -1),
                cw=a["cw"], w=a["w"].reshape(2, -1))


def _same(ours: list, theirs: list, exact: bool = True) -> None:
    """Equal, bit for bit (``exact``), else within torch's tolerance for the dtype."""
    tolerance = dict(rtol=0, atol=0) if exact else {}
    for a, b in zip(ours, theirs, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, equal_nan=True, **tolerance)


# sparse smoothing and class weights without ``where`` run in F.cross_entropy (test_torch.py)
CHUNKED = [("dense", o) for o in sorted(OPTIONS)] + [
    ("sparse", o) for o in sorted(OPTIONS) if o.startswith("where") or o == "all"]


@pytest.mark.parametrize(("kind", "option"), CHUNKED)
@pytest.mark.parametrize("shape", [(64, 50), (700, 1000)])  # one chunk; three, the last short
def test_chunked_options_equal_the_composition(kind: str, option: str, shape: tuple,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a = _inputs(*shape)
    ours = _run(kind, a, OPTIONS[option](a))
    _composed(monkeypatch)
    _same(ours, _run(kind, a, OPTIONS[option](a)))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_class_axis_in_the_middle(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _middle(_inputs(64, 50))
    ours = _run(kind, a, OPTIONS["all"](a), 1)
    _composed(monkeypatch)
    _same(ours, _run(kind, a, OPTIONS["all"](a), 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_low_precision(kind: str, dtype: torch.dtype) -> None:
    """16-bit inputs: computed in float32, so within a few eps (of the dtype) of the exact
    answer for the same inputs (float64), relative to each row's scale. (The composition
    rounds the smoothed, weighted labels to the dtype first: a little less accurate.)"""
    a = _inputs(64, 50, dtype)
    ours = _run(kind, a, OPTIONS["all"](a))
    wide = {k: v.double() if v.is_floating_point() else v for k, v in a.items()}
    truth = _run(kind, wide, OPTIONS["all"](wide))
    eps = torch.finfo(dtype).eps
    for got, want in zip(ours, truth, strict=True):
        want = want.to(dtype).double()
        scale = want.nan_to_num(0.0, 0.0, 0.0).abs().amax(-1, keepdim=True).clamp_min(1.0)
        torch.testing.assert_close(got.double(), want, equal_nan=True, rtol=0,
                                   atol=(4 * eps * scale).expand_as(want).amax().item())


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_derivatives_of_derivatives(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _inputs(64, 50)
    probe = torch.linspace(0, 1, 50, dtype=torch.float64)

    def second() -> list:
        x = a["x"].clone().requires_grad_(True)
        options = OPTIONS["all"](a)
        if kind == "sparse":
            loss = sparse(labels=a["t"], logits=x, ignore_index=-100, **options)
        else:
            loss = dense(labels=a["y"], logits=x, **options)
        (g,) = torch.autograd.grad(loss.nansum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g.nan_to_num(0.0, 0.0, 0.0) * probe).sum(), x)
        return [g, h]

    ours = second()
    _composed(monkeypatch)
    _same(ours, second())


def test_plain_eager_code_does_not_compose(monkeypatch: pytest.MonkeyPatch) -> None:
    """The options of a plain eager CPU call are built chunk by chunk, not composed."""
    def composed(*args: object) -> None:
        raise AssertionError("composed")

    monkeypatch.setattr(_options, "dense_rows", composed)
    a = _inputs(64, 50)
    for option in OPTIONS:
        dense(labels=a["y"], logits=a["x"].requires_grad_(True), **OPTIONS[option](a))
    sparse(labels=a["t"], logits=a["x"], ignore_index=-100, where=a["m"])

