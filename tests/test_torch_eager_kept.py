"""torch's one-pass ``where`` (``xent.backends._torch_eager_kept``) against the composition
every backend has (``xent._options``), sparse and dense labels: values and gradients (in
the logits, and in dense labels) equal to the dtype's tolerance on batches that pass takes
(ignored rows with non-finite logits, an excluded label, a kept ``-inf`` logit with and
without a label, class weights, smoothing, the class axis in the middle, a mask the same for
every row), exactly 0 where nothing is read, derivatives of derivatives and batched
gradients; a batch with a row that pass cannot take runs the chunked kernel, bit for bit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import xent  # noqa: E402
from xent.backends import _torch_eager_kept  # noqa: E402
from xent.backends._base import Backend  # noqa: E402
from xent.backends._torch import TorchBackend  # noqa: E402
from xent.backends._torch_eager import NATIVE  # noqa: E402

INF, NAN = float("inf"), float("nan")
sparse = xent.sparse_softmax_cross_entropy_with_logits
dense = xent.softmax_cross_entropy_with_logits

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
    y = torch.rand(rows, classes, generator=g, dtype=dtype)  # dense labels (unnormalised)
    y[5, (t[5] + 1) % classes] = 0.0  # ... 0 at the kept -inf: finite without smoothing
    y[4, (t[4] + 1) % classes] = 7.0  # ... at an excluded class: never read
    x[6, (t[6] + 2) % classes], m[6, (t[6] + 2) % classes] = -INF, True  # kept, labelled:
    return dict(x=x, y=y, m=m, t=t,  # +inf for dense labels (and sparse under smoothing)
                cw=torch.rand(classes, generator=g, dtype=dtype) + 0.5,
                w=torch.rand(rows, generator=g, dtype=dtype))


def _dense_batch(rows: int, classes: int, dtype: torch.dtype) -> dict:
    """:func:`_batch` for dense labels: no row of NaN or infinities (the sparse padding's)."""
    a = _batch(rows, classes, dtype)
    a["x"][1:3] = 0.0
    return a


def _options(a: dict, option: str, kind: str = "sparse") -> dict:
    more = dict(ignore_index=-100) if kind == "sparse" else {}
    return dict(where=a["m"], **more,
                **{k: a[v] if isinstance(v, str) else v for k, v in OPTIONS[option].items()})


def _call(a: dict, options: dict, grad: bool, dim: int = 1, kind: str = "sparse") -> list:
    x = a["x"].clone().requires_grad_(grad)
    if kind == "sparse":
        loss = sparse(labels=a["t"], logits=x, axis=dim, **options)
        return [loss, *torch.autograd.grad(loss.nansum(), x)] if grad else [loss]
    y = a["y"].clone().requires_grad_(grad)
    loss = dense(labels=y, logits=x, axis=dim, **options)
    return [loss, *torch.autograd.grad(loss.nansum(), [x, y])] if grad else [loss]


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
def test_sparse_one_pass_equals_the_composition(shape: tuple, option: str,
                                                dtype: torch.dtype, grad: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
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
    smooths = option in ("smoothing", "all")  # a kept -inf (not the label's): +inf
    assert bool(torch.isinf(loss[5])) == bool(torch.isinf(loss[6])) == smooths
    if grad:
        g = ours[1]
        assert not g[1:3].any()  # ignored rows: exactly 0
        assert not g[~a["m"]].any()  # excluded classes: exactly 0
        if option in ("where", "weights"):
            assert not g[3].any()  # a row that reads nothing


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("shape", [(64, 50), (700, 1000)])
def test_dense_one_pass_equals_the_composition(shape: tuple, option: str,
                                               dtype: torch.dtype, grad: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a = _dense_batch(*shape, dtype)
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, option, "dense"), grad, kind="dense")
    assert taken == [True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, _call(a, _options(a, option, "dense"), grad, kind="dense"))
    loss = ours[0]
    assert torch.isfinite(loss[4]) and torch.isinf(loss[6])
    assert torch.isinf(loss[5]) == (option in ("smoothing", "all"))
    if grad:
        dx, dy = ours[1:]
        assert not dx[~a["m"]].any() and not dy[~a["m"]].any()  # excluded: exactly 0
        assert torch.isinf(dy[5]).sum() == 1 and torch.isinf(dy[6]).sum() == 1  # kept -inf
        assert torch.isfinite(dx).all()  # also in the rows of an infinite loss


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("option", ["smoothing", "weights", "all"])
@pytest.mark.parametrize("shape", [(64, 50), (700, 1000)])
def test_dense_options_without_a_mask(shape: tuple, option: str, grad: bool,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Smoothing and class weights of dense labels, no mask: the same pass with ``k = 1``;
    up to ``NATIVE`` elements torch's own kernel (``F.cross_entropy`` with ``weight`` and
    ``label_smoothing`` of probability targets: the same formula)."""
    a = _dense_batch(*shape, torch.float64)
    options = _options(a, option, "dense")
    del options["where"]
    taken = _taken(monkeypatch)
    ours = _call(a, options, grad, kind="dense")
    # small: torch's kernel, but for a zero label at a -inf logit (row 5), NaN there
    # without smoothing: the one pass then
    assert taken == ([True] if shape[0] * shape[1] > NATIVE or option == "weights" else [])
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, _call(a, options, grad, kind="dense"))
    loss = ours[0]
    assert torch.isinf(loss[4]) and torch.isinf(loss[6])  # a -inf logit with a label
    assert bool(torch.isinf(loss[5])) == (option != "weights")  # labelled by smoothing
    if grad:
        assert torch.isfinite(ours[1]).all()


BATCHES = {"sparse": _batch, "dense": _dense_batch}


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_class_axis_in_the_middle(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = BATCHES[kind](64, 50, torch.float64)

    def move(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(2, -1, v.shape[1]).movedim(2, 1).contiguous()

    a = dict(x=move(a["x"]), y=move(a["y"]), m=move(a["m"]), t=a["t"].reshape(2, -1),
             cw=a["cw"], w=a["w"].reshape(2, -1))
    _equal_to_the_composition(a, kind, monkeypatch)


def _equal_to_the_composition(a: dict, kind: str, monkeypatch: pytest.MonkeyPatch,
                              option: str = "all") -> None:
    """With a gradient: the one pass taken, and the composition's numbers."""
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, option, kind), True, kind=kind)
    assert taken == [True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, _call(a, _options(a, option, kind), True, kind=kind))


@pytest.mark.parametrize("mask", ["[1, C]", "[C]"])
@pytest.mark.parametrize("option", ["where", "all"])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_where_the_same_for_every_row(kind: str, option: str, mask: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A vocabulary mask, the same for every row: applied as a ``[C]`` vector (its sums
    matrix-vector products, no mask tile per chunk); the composition's values and gradients,
    also in rows whose maximum it excludes."""
    a = BATCHES[kind](700, 1000, torch.float64)
    a["m"] = a["m"][:1] if mask == "[1, C]" else a["m"][0]  # broadcast along the rows
    a["x"][4:7] = 0.0  # (their -inf was for the full mask)
    kept = a["m"].reshape(-1)
    excluded = int(torch.nonzero(~kept)[0])
    for row in range(8, 40):  # the maximum excluded, a little above the kept classes
        a["x"][row, excluded] = a["x"][row][kept].max() + 0.5
    shared: list[bool] = []
    tiled = _torch_eager_kept._tiled
    monkeypatch.setattr(_torch_eager_kept, "_tiled", lambda d: shared.append(
        d.row_mask is not None) or tiled(d))
    _equal_to_the_composition(a, kind, monkeypatch, option)
    assert shared and all(shared)  # forward and backward


@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("option", ["where", "all"])
def test_derivatives_of_derivatives_and_batched_gradients(
        kind: str, option: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = BATCHES[kind](64, 50, torch.float64)
    a["x"][5:7] = 0.0  # no kept -inf: a finite loss to differentiate twice
    probe = torch.linspace(0, 1, 50, dtype=torch.float64)
    cotangents = torch.eye(64, dtype=torch.float64)[:3]

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if kind == "sparse":
            return sparse(labels=a["t"], logits=x, **_options(a, option))
        return dense(labels=y, logits=x, **_options(a, option, kind))

    def second() -> list:
        x = a["x"].clone().requires_grad_(True)
        y = a["y"].clone().requires_grad_(kind == "dense")
        inputs = [x, y] if kind == "dense" else [x]
        first = torch.autograd.grad(loss_of(x, y).sum(), inputs, create_graph=True)
        (h,) = torch.autograd.grad((first[0] * probe).sum() + (first[-1] * probe).sum(), x)
        rows = torch.autograd.grad(loss_of(x, y), inputs, cotangents, is_grads_batched=True)
        return [*first, h, *rows]

    taken = _taken(monkeypatch)
    ours = second()
    assert taken == [True, True]
    monkeypatch.undo()
    _composed(monkeypatch)
    _close(ours, second())


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_a_batch_the_one_pass_cannot_take_runs_the_chunked_kernel(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN or an infinity at an excluded class, no class left, an excluded maximum far
    above a confident row, a NaN label at an excluded class: the chunked kernel on the
    masked logits, bit for bit (without a gradient, as with one)."""
    a = BATCHES[kind](700, 1000, torch.float64)
    t, c = a["t"], 1000
    cases = []
    for row in range(7, 11):
        b = {k: v.clone() for k, v in a.items()}
        if row == 7:
            b["x"][7, (t[7] + 1) % c], b["m"][7, (t[7] + 1) % c] = NAN, False
        elif row == 8:
            b["m"][8] = False
        elif row == 9:
            b["x"][9] = -40.0
            b["x"][9, t[9]], b["x"][9, (t[9] + 1) % c] = 0.0, 60.0
            b["y"][9] = 0.0
            b["y"][9, t[9]] = 1.0
            b["m"][9, (t[9] + 1) % c] = False
        elif kind == "dense":
            b["y"][10, (t[10] + 1) % c], b["m"][10, (t[10] + 1) % c] = NAN, False
        else:
            continue
        cases.append(b)
    for b in cases:
        for option in ("where", "all"):
            taken = _taken(monkeypatch)
            values = _call(b, _options(b, option, kind), False, kind=kind)
            chunked = _call(b, _options(b, option, kind), True, kind=kind)
            assert taken == [False, False]
            _close(values, chunked[:1], exact=True)
            monkeypatch.undo()
            _composed(monkeypatch)
            _close(chunked, _call(b, _options(b, option, kind), True, kind=kind))
            monkeypatch.undo()


@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(kind: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """16-bit inputs: computed in float32 and within an eps (of the dtype) of the exact
    answer for the same inputs, relative to each row's scale."""
    a = BATCHES[kind](64, 50, dtype)
    a["x"][5:7] = 0.0  # (a kept -inf: a label gradient of +inf, no scale to compare to)
    taken = _taken(monkeypatch)
    ours = _call(a, _options(a, "all", kind), True, kind=kind)
    assert taken == [True]
    wide = {k: v.double() if v.is_floating_point() else v for k, v in a.items()}
    truth = _call(wide, _options(wide, "all", kind), True, kind=kind)
    eps = torch.finfo(dtype).eps
    for got, want in zip(ours, truth, strict=True):
        assert got.dtype == dtype
        want = want.to(dtype).double()
        scale = want.nan_to_num(0.0, 0.0, 0.0).abs().amax(-1, keepdim=True).clamp_min(1.0)
        torch.testing.assert_close(got.double(), want, equal_nan=True, rtol=0,
                                   atol=(2 * eps * scale).expand_as(want).amax().item())
