"""What each rank of a gloo group checks for ``tests/test_dtensor.py``.

Every rank runs the same checks on the same global values (seeded), so the ranks make the
same collectives in the same order; a failed check is recorded, never raised (one rank
raising while the others wait in a collective is a deadlock). Each check compares a DTensor
call, forward and backward, with the same call on the unsharded tensors (xent's torch
backend, float64) and counts the collectives it makes (``CommDebugMode``, with the number
of elements each one moves).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.debug import CommDebugMode

import xent
from xent.backends._torch_dtensor_pool import mesh

dense = xent.softmax_cross_entropy_with_logits
sparse = xent.sparse_softmax_cross_entropy_with_logits
RTOL, ATOL = 1e-12, 1e-14


class Comms(CommDebugMode):
    """``CommDebugMode`` that also records each collective's name and input size."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        before = sum(self.comm_counts.values())
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if sum(self.comm_counts.values()) > before:
            size = next((a.numel() for a in args if isinstance(a, torch.Tensor)), 0)
            self.calls.append((str(func._overloadpacket), size))
        return out


class Report:
    """The failures of one rank, and the collectives of each call (forward, backward)."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.counts: dict[str, tuple[int, int]] = {}
        self.calls: dict[str, list[tuple[str, int]]] = {}

    def close(self, what: str, got: Any, want: Any, rtol: float = RTOL) -> None:
        got = got.full_tensor() if isinstance(got, DTensor) else got
        if got is None or want is None:
            if (got is None) != (want is None):
                self.failures.append(f"{what}: got {got}, want {want}")
            return
        got, want = got.detach().double(), want.detach().double()
        if got.shape != want.shape or not torch.allclose(got, want, rtol, ATOL, equal_nan=True):
            self.failures.append(f"{what}: got {got.tolist()}, want {want.tolist()}")

    def guard(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - recorded; the ranks fail alike
            self.failures.append(f"{what}: raised {type(error).__name__}: {error}")


def _place(x: torch.Tensor, m: Any, placements: tuple[Any, ...]) -> DTensor:
    """``x`` (global values, on every rank) as a DTensor; ``Partial`` placements hold an
    uneven split of the value (rank r: x * w_r, sum_r w_r = 1)."""
    if any(p.is_partial() for p in placements):
        weights = torch.arange(1.0, m.size() + 1, dtype=x.dtype)
        part = x * (weights[m.get_rank()] / weights.sum())
        part = torch.where(torch.isfinite(x), part, x)  # keep -inf classes -inf on every rank
        return DTensor.from_local(part, m, placements, run_check=False)
    return distribute_tensor(x, m, placements, src_data_rank=None)


def _rows(placements: tuple[Any, ...], axis: int) -> tuple[Any, ...]:
    return tuple(Replicate() if p.is_shard(axis) else
                 Shard(p.dim - (p.dim > axis)) if isinstance(p, Shard) else Replicate()
                 for p in placements)


def problem(shape: tuple[int, ...], axis: int, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (a masked class in one row, a confident row), soft labels (0 at the masked
    class) and sparse labels, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    rows = x.movedim(axis, -1).reshape(-1, shape[axis])
    labels = y.movedim(axis, -1).reshape(-1, shape[axis])
    if shape[axis] > 1:
        rows[0, -1], labels[0, -1] = -torch.inf, 0.0  # a masked class
        rows[1, 0] += 40.0  # a confident row
    x = rows.reshape(x.movedim(axis, -1).shape).movedim(-1, axis).contiguous()
    y = labels.reshape(y.movedim(axis, -1).shape).movedim(-1, axis).contiguous()
    s = torch.randint(0, shape[axis], shape[:axis] + shape[axis + 1 :], generator=g)
    return x, y / y.sum(axis, keepdim=True).clamp_min(1e-3), s


FORMS = ("placed like the logits", "replicated", "plain global", "moved")


def labels_as(form: str, values: torch.Tensor, m: Any, like: tuple[Any, ...]) -> Any:
    """Labels (global ``values``) in ``form``: a DTensor placed ``like`` (the logits', or the
    rows' for sparse labels), a replicated DTensor, a plain tensor, or a DTensor sharded
    otherwise (``moved``: on dim 0, or replicated where ``like`` shards dim 0)."""
    if form == "placed like the logits":
        return _place(values, m, like)
    if form == "plain global":
        return values.clone()
    placements = [Replicate()] * m.ndim
    if form == "moved" and values.dim() and like[0] != Shard(0):
        placements[0] = Shard(0)
    return distribute_tensor(values, m, placements, src_data_rank=None)


def _grad(x: Any) -> Any:
    return None if x.grad is None else x.grad


def functions(report: Report, m: Any, placements: tuple[Any, ...], shape: tuple[int, ...],
              axis: int, name: str) -> None:
    """The four functions on logits placed so: values and gradients, every label form."""
    x, y, s = problem(shape, axis)
    upstream = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    rows_upstream = upstream.sum(axis)
    for fn_name in ("softmax", "log_softmax"):
        fn = getattr(xent, fn_name)
        want_x = x.clone().requires_grad_()
        want = fn(want_x, axis)
        want.backward(upstream)
        dx = _place(x, m, placements).requires_grad_()
        with Comms() as fwd:
            got = fn(dx, axis)
        with Comms() as bwd:
            got.backward(_place(upstream, m, tuple(got.placements)))
        report.counts[f"{name} {fn_name}"] = (fwd.get_total_counts(), bwd.get_total_counts())
        report.calls.setdefault(name, []).extend(fwd.calls + bwd.calls)
        report.close(f"{name} {fn_name}", got, want)
        report.close(f"{name} {fn_name} d/dlogits", dx.grad, want_x.grad)
    rows = _rows(placements, axis)
    for form, kind in itertools.product(FORMS, ("dense", "sparse")):
        what = f"{name} {kind} loss, labels {form}"
        want_x, want_y = x.clone().requires_grad_(), y.clone().requires_grad_()
        dx = _place(x, m, placements).requires_grad_()
        if kind == "dense":
            labels = labels_as(form, y, m, placements).requires_grad_()
            want = dense(labels=want_y, logits=want_x, axis=axis)
        else:
            labels = labels_as(form, s, m, rows)
            want = sparse(labels=s, logits=want_x, axis=axis)
        want.backward(rows_upstream)
        with Comms() as fwd:
            got = (dense if kind == "dense" else sparse)(labels=labels, logits=dx, axis=axis)
        with Comms() as bwd:
            got.backward(_place(rows_upstream, m, tuple(got.placements)))
        if form == FORMS[0]:
            report.counts[f"{name} {kind}"] = (fwd.get_total_counts(), bwd.get_total_counts())
            report.calls.setdefault(name, []).extend(fwd.calls + bwd.calls)
        report.close(what, got, want)
        report.close(f"{what} d/dlogits", dx.grad, want_x.grad)
        if kind == "dense":
            report.close(f"{what} d/dlabels", _grad(labels), want_y.grad)
        if not isinstance(got, DTensor) or tuple(got.placements) != rows:
            report.failures.append(f"{what}: result {type(got).__name__} "
                                   f"{getattr(got, 'placements', None)}, want {rows}")


def options(report: Report, m: Any, placements: tuple[Any, ...], shape: tuple[int, ...],
            axis: int, name: str) -> None:
    """The language-model options (ignore_index, label smoothing) and every other option,
    each reduction, against the unsharded call: values and d/dlogits."""
    x, y, s = problem(shape, axis, seed=2)
    s.view(-1)[1] = -100
    num_classes = shape[axis]
    g = torch.Generator().manual_seed(3)
    where = torch.rand(shape, generator=g) > 0.2
    where.select(axis, 0).fill_(True)
    rows_shape = shape[:axis] + shape[axis + 1 :]
    calls = [
        ("sparse ignore_index+smoothing", sparse, s,
         {"ignore_index": -100, "label_smoothing": 0.1}),
        ("sparse every option", sparse, s,
         {"ignore_index": -100, "label_smoothing": 0.2, "where": where,
          "class_weights": torch.linspace(0.5, 2.0, num_classes, dtype=x.dtype),
          "weights": torch.rand(rows_shape, generator=g, dtype=x.dtype)}),
        ("dense every option", dense, _place(y, m, placements),
         {"label_smoothing": 0.1, "where": where.numpy(),
          "class_weights": torch.linspace(0.5, 2.0, num_classes, dtype=x.dtype).tolist(),
          "weights": torch.rand(rows_shape, generator=g, dtype=x.dtype)}),
    ]
    for (what, fn, labels, opts), reduction in itertools.product(
            calls, ("none", "sum", "mean", "weighted_mean")):
        what = f"{name} {what} {reduction}"
        want_x = x.clone().requires_grad_()
        want = fn(labels=labels.full_tensor() if isinstance(labels, DTensor) else labels,
                  logits=want_x, axis=axis, reduction=reduction, **opts)
        want.sum().backward()
        dx = _place(x, m, placements).requires_grad_()

        def call(dx: DTensor = dx, labels: Any = labels, opts: Any = opts,
                 fn: Any = fn, reduction: str = reduction, what: str = what,
                 want: Any = want, want_x: Any = want_x) -> None:
            got = fn(labels=labels, logits=dx, axis=axis, reduction=reduction, **opts)
            got.sum().backward() if got.dim() else got.backward()
            report.close(what, got, want)
            report.close(f"{what} d/dlogits", dx.grad, want_x.grad)

        report.guard(what, call)


def out_of_range(report: Report, m: Any, placements: tuple[Any, ...], name: str) -> None:
    """Labels 7 and -1 with C = 5: NaN in those rows on every rank, the others exact."""
    x, _, s = problem((4, 5), 1, seed=4)
    s[1], s[3] = 7, -1
    dx = _place(x, m, placements).requires_grad_()
    got = sparse(labels=s, logits=dx)
    got.sum().backward()
    ok = s.clamp(0, 4)
    want = sparse(labels=ok, logits=x).masked_fill((s < 0) | (s > 4), float("nan"))
    report.close(f"{name} out of range", got, want)


def readme(report: Report, code: str) -> None:
    """The README's example, on every rank, against the unsharded loss."""
    scope: dict[str, Any] = {"print": lambda *args: None}
    exec(code, scope)
    loss, logits = scope["loss"], scope["logits"]
    unsharded = sparse(labels=scope["labels"], logits=logits.full_tensor(), ignore_index=-100,
                       label_smoothing=0.1, reduction="mean")
    report.close("README example", loss, unsharded, rtol=1e-6)  # float32
    if logits.grad is None or not isinstance(loss, DTensor):
        report.failures.append("README example: no gradient, or not a DTensor")


#: name -> (mesh shape, logits placements, logits shape, class axis)
SETUPS_2 = {
    "classes C=5": ((2,), (Shard(1),), (6, 5), 1),
    "rows": ((2,), (Shard(0),), (6, 5), 1),
    "replicated": ((2,), (Replicate(),), (6, 5), 1),
    "pending sums": ((2,), (Partial(),), (6, 5), 1),
    "rank 3, classes on axis 1": ((2,), (Shard(1),), (3, 5, 2), 1),
    "rank 3, rows on axis 2": ((2,), (Shard(2),), (3, 5, 2), 1),
}
SETUPS_4 = {
    "classes C=3 (an empty shard)": ((4,), (Shard(1),), (5, 3), 1),
    "2-D mesh: rows x classes": ((2, 2), (Shard(0), Shard(1)), (6, 5), 1),
    "2-D mesh: classes x rows": ((2, 2), (Shard(1), Shard(0)), (6, 5), 1),
    "2-D mesh: replicated x classes": ((2, 2), (Replicate(), Shard(1)), (6, 5), 1),
    "2-D mesh: classes over both": ((2, 2), (Shard(1), Shard(1)), (6, 7), 1),
    "2-D mesh: rank 3, axis 1": ((2, 2), (Shard(2), Shard(1)), (3, 5, 4), 1),
}


def run(world: int, readme_code: str | None = None) -> Report:
    """Every check of this world size, on this rank."""
    report = Report()
    for name, (mesh_shape, placements, shape, axis) in (SETUPS_2 if world == 2
                                                         else SETUPS_4).items():
        m = mesh(mesh_shape)
        report.guard(name, partial(functions, report, m, placements, shape, axis, name))
        report.guard(name, partial(options, report, m, placements, shape, axis, name))
        if len(shape) == 2 and shape[1] == 5:
            report.guard(name, partial(out_of_range, report, m, placements, name))
    if readme_code is not None:
        report.guard("README example", partial(readme, report, readme_code))
    return report
