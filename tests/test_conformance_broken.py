"""The conformance suite catches wrong backends.

``FakeBackend`` is a complete third-party backend: its tensors are a small wrapper around
NumPy arrays, its values come from the NumPy reference kernels and its "autodiff" is the
analytic gradient of the one loss op that the suite's calls contain. It passes the whole
catalog, in an eager and a tracing mode. Each broken variant changes one thing and must
fail, with the failing cases named. This module doubles as a ``--import`` target: importing
it registers nothing, :func:`register_all` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xent
from xent import _dispatch
from xent import backends as registry
from xent.backends import Backend
from xent.backends._numpy import NumpyBackend
from xent.conformance import cases, runner


class Tensor:
    """A NumPy array of the fake framework; ``stop`` marks a ``stop_gradient``; a loss
    carries the gradients of its sum with respect to its labels and logits; every result
    carries ``forward``, its derivative along tangents of its inputs (forward mode)."""

    def __init__(self, array: np.ndarray, stop: bool = False,
                 grads: tuple[np.ndarray | None, np.ndarray] | None = None,
                 forward: Callable[..., np.ndarray] | None = None) -> None:
        self.array, self.stop, self.grads, self.forward = array, stop, grads, forward

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape  # type: ignore[no-any-return]


class FakeBackend(Backend):
    """A correct backend (see the module docstring). Each subclass has its own tensor type,
    so that several can be registered at once."""

    name = "fake"
    tensor: type[Tensor] = Tensor

    def __init_subclass__(cls) -> None:
        cls.tensor = type(f"{cls.__name__}Tensor", (Tensor,), {})
    module = None
    modes = ("eager", "trace")
    tracing_modes = ("trace",)
    has_autodiff = True
    relative_accuracy = True  # as the NumPy reference it wraps: held to the relative rows

    def __init__(self) -> None:
        self.np = NumpyBackend()
        self.dtypes = self.np.dtypes
        self.tracing = False

    # -- dispatch and conversion --------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return type(x) is self.tensor

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return x.array.shape  # type: ignore[no-any-return]

    def dtype_name(self, x: Tensor) -> str:
        return x.array.dtype.name  # type: ignore[no-any-return]

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> Tensor:
        array = np.asarray(value)
        return self.tensor(array if dtype is None else array.astype(cases._np_dtype(dtype)))

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        if x.array.dtype.name == dtype:
            return x
        return self.tensor(x.array.astype(cases._np_dtype(dtype)), x.stop)

    def to_numpy(self, x: Tensor) -> np.ndarray:
        return x.array

    def stop_gradient(self, x: Tensor) -> Tensor:
        return self.tensor(x.array, stop=True)

    def first_out_of_range(self, labels: Tensor, num_classes: int) -> int | None:
        return None if self.tracing else self.np.first_out_of_range(labels.array, num_classes)

    # -- math -------------------------------------------------------------------------------
    def softmax(self, logits: Tensor, axis: int) -> Tensor:
        p = self.np.softmax(logits.array.astype(np.float64), axis)
        return self.tensor(self.np.softmax(logits.array, axis),
                           forward=lambda dx: p * _centred(p, dx, axis))

    def log_softmax(self, logits: Tensor, axis: int) -> Tensor:
        p = self.np.softmax(logits.array.astype(np.float64), axis)
        return self.tensor(self.np.log_softmax(logits.array, axis),
                           forward=lambda dx: _centred(p, dx, axis))

    def softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                          axis: int) -> Tensor:
        x, y = logits.array, labels.array
        value = self.np.softmax_cross_entropy_with_logits(y, x, axis)
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        p = self.np.softmax(x64, axis)
        with np.errstate(all="ignore"):
            dlogits = p * y64.sum(axis=axis, keepdims=True) - y64
            dlabels = -self.np.log_softmax(x64, axis)
        dl = None if labels.stop else dlabels.astype(x.dtype)

        def forward(dy: np.ndarray | None, dx: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                t = (dlogits * dx).sum(axis=axis)
                return t if dy is None or labels.stop else t + (dlabels * dy).sum(axis=axis)

        return self.tensor(value, grads=(dl, dlogits.astype(x.dtype)), forward=forward)

    def sparse_softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                                 axis: int) -> Tensor:
        x, s = logits.array, labels.array
        bad = (s < 0) | (s >= x.shape[axis])  # only reachable while tracing
        s = np.where(bad, 0, s)
        value = self.np.sparse_softmax_cross_entropy_with_logits(s, x, axis)
        value = np.where(bad, np.nan, value).astype(x.dtype)
        dlogits = self.np.softmax(x.astype(np.float64), axis)
        np.put_along_axis(dlogits, np.expand_dims(s, axis), np.take_along_axis(
            dlogits, np.expand_dims(s, axis), axis) - 1.0, axis)
        return self.tensor(value, grads=(None, dlogits.astype(x.dtype)),
                           forward=lambda dy, dx: (dlogits * dx).sum(axis=axis))

    # -- conformance hooks ------------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        self.tracing = mode in self.tracing_modes
        try:
            return self.to_numpy(fn(*[self.tensor(a) for a in args]))
        finally:
            self.tracing = False

    def value_and_grad(self, mode: str, fn: Callable[..., Any], labels: np.ndarray,
                       logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        self.tracing = mode in self.tracing_modes
        try:
            loss = fn(self.tensor(labels), self.tensor(logits))
        finally:
            self.tracing = False
        assert loss.grads is not None, "the fake autodiff knows only the loss ops"
        dlabels, dlogits = loss.grads
        return loss.array, dlabels, dlogits

    def jvp(self, mode: str, fn: Callable[..., Any], args: tuple[np.ndarray, ...],
            tangents: tuple[np.ndarray | None, ...]) -> tuple[np.ndarray, np.ndarray]:
        self.tracing = mode in self.tracing_modes
        try:
            out = fn(*[self.tensor(a) for a in args])
        finally:
            self.tracing = False
        assert out.forward is not None, "every fake op has a forward-mode rule"
        wide = [None if t is None else t.astype(np.float64) for t in tangents]
        with np.errstate(over="ignore"):  # near the dtype's limit a tangent may overflow
            return out.array, out.forward(*wide).astype(out.array.dtype)


def _centred(p: np.ndarray, dx: np.ndarray, axis: int) -> np.ndarray:
    """``dx - sum_k p_k dx_k``: the derivative of log_softmax along ``dx``."""
    with np.errstate(all="ignore"):
        return dx - (p * dx).sum(axis=axis, keepdims=True)


class LogOfSoftmax(FakeBackend):
    """``log(softmax(x))``: underflows to ``-inf``, loses confident losses, NaN at masks."""

    name = "broken-log-of-softmax"

    def log_softmax(self, logits: Tensor, axis: int) -> Tensor:
        good = super().log_softmax(logits, axis)
        with np.errstate(all="ignore"):
            good.array = np.log(self.np.softmax(logits.array, axis))
        return good

    def softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                          axis: int) -> Tensor:
        good = super().softmax_cross_entropy_with_logits(labels, logits, axis)
        y = labels.array.astype(logits.array.dtype)
        with np.errstate(all="ignore"):
            good.array = -(y * self.log_softmax(logits, axis).array).sum(axis=axis)
        return good

    def sparse_softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                                 axis: int) -> Tensor:
        good = super().sparse_softmax_cross_entropy_with_logits(labels, logits, axis)
        logp = self.log_softmax(logits, axis).array
        picked = np.take_along_axis(logp, np.expand_dims(labels.array, axis), axis)
        good.array = -np.squeeze(picked, axis)
        return good


class OffByRelative(FakeBackend):
    """Every value 3e-4 too large (relative)."""

    name = "broken-off-by-3e-4"

    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        out = super().run(mode, fn, *args)
        return (out * out.dtype.type(1 + 3e-4)).astype(out.dtype)


class IgnoresAxis(FakeBackend):
    """Always reduces over the last axis."""

    name = "broken-ignores-axis"

    def softmax(self, logits: Tensor, axis: int) -> Tensor:
        return super().softmax(logits, logits.array.ndim - 1)

    def log_softmax(self, logits: Tensor, axis: int) -> Tensor:
        return super().log_softmax(logits, logits.array.ndim - 1)

    def softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                          axis: int) -> Tensor:
        return super().softmax_cross_entropy_with_logits(labels, logits, logits.array.ndim - 1)

    def sparse_softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                                 axis: int) -> Tensor:
        return super().sparse_softmax_cross_entropy_with_logits(labels, logits,
                                                             logits.array.ndim - 1)


class LeaksLabelGradient(FakeBackend):
    """``stop_gradient`` does nothing: compat.v1 lets the gradient into labels."""

    name = "broken-leaks-label-gradient"

    def stop_gradient(self, x: Tensor) -> Tensor:
        return x


class ForwardWithoutLabelTotal(FakeBackend):
    """Forward mode of the dense loss uses ``softmax - labels`` (TF's fused-kernel gradient),
    not ``softmax * sum(labels) - labels``: wrong wherever labels do not sum to 1."""

    name = "broken-forward-without-label-total"

    def softmax_cross_entropy_with_logits(self, labels: Tensor, logits: Tensor,
                                          axis: int) -> Tensor:
        good = super().softmax_cross_entropy_with_logits(labels, logits, axis)
        p = self.np.softmax(logits.array.astype(np.float64), axis)
        total = labels.array.astype(np.float64).sum(axis=axis, keepdims=True)
        right = good.forward
        assert right is not None
        # (softmax - labels) - (softmax * total - labels) = softmax * (1 - total)
        good.forward = lambda dy, dx: right(dy, dx) + (p * (1 - total) * dx).sum(axis=axis)
        return good


BROKEN = (LogOfSoftmax, OffByRelative, IgnoresAxis, LeaksLabelGradient,
          ForwardWithoutLabelTotal)


def register_all() -> None:
    """Register the fake and every broken backend (the ``--import`` module calls this)."""
    for cls in (FakeBackend, *BROKEN):
        registry.register(cls())


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Backend], Backend]]:
    """Register backends for one test; the registry is restored afterwards."""
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    yield registry.register
    _dispatch._clear_cache()


def failing(backend: Backend, names: list[str] | None = None,
            dtypes: tuple[str, ...] = cases.DTYPES) -> dict[str, set[str]]:
    """case -> the failing ``quantity/dtype/mode`` of running the catalog on ``backend``."""
    found: dict[str, set[str]] = {}
    for name in names or cases.case_names():
        for dtype in dtypes:
            for mode in backend.modes:
                for r in runner.evaluate(name, dtype, backend, mode).records:
                    if r.passed is False:
                        found.setdefault(name, set()).add(f"{r.quantity}/{dtype}/{mode}")
    return found


def test_the_fake_backend_passes_everything(registered: Any) -> None:
    backend = registered(FakeBackend())
    assert failing(backend) == {}
    # it implements no array operations: its option cases are n/a, not failures
    records = runner.evaluate("opt_combined", "float32", backend, "eager").records
    assert {r.status for r in records} == {"n/a"}
    assert "does not implement Backend.where" in records[0].detail


def test_a_registered_backend_receives_its_own_tensors(registered: Any) -> None:
    backend = registered(FakeBackend())
    out = xent.softmax(Tensor(np.array([0.5, 1.5, 0.1])))
    assert isinstance(out, Tensor)
    assert _dispatch.owner(out) is backend


def test_log_of_softmax_fails_underflow_confidence_and_masks(registered: Any) -> None:
    found = failing(registered(LogOfSoftmax()))
    assert {"logits_1e4", "confident", "masked", "masked_all_but_one"} <= found.keys()
    assert "log_softmax/float32/eager" in found["confident"]  # log(1 - 7e-9) rounds to 0
    assert "loss/float64/trace" in found["masked"]  # 0 * log(0) = NaN
    assert "seed" not in found and "random_1" not in found


def test_a_relative_error_of_3e_4_fails_in_float32(registered: Any) -> None:
    found = failing(registered(OffByRelative()), dtypes=("float32",))
    for name in ("seed", "random_1", "random_10", "random_100", "logits_1e4", "soft_labels",
                 "large_classes", "rank3_axis0"):
        assert {"softmax/float32/eager", "loss/float32/eager",
                "sparse_loss/float32/trace"} & found[name], name
    assert "zero_labels" in found  # 0 stays 0, but softmax and log_softmax do not
    assert "one_class" in found  # log_softmax 0 stays 0, but softmax 1 does not


def test_ignoring_axis_fails_exactly_the_cases_with_another_axis(registered: Any) -> None:
    found = failing(registered(IgnoresAxis()), dtypes=("float32",))
    assert set(found) == {"rank3_axis0", "rank3_axis1"}
    assert "loss/float32/eager" in found["rank3_axis0"]
    assert "dlogits/float32/trace" in found["rank3_axis1"]


def test_a_label_gradient_under_compat_v1_fails_every_v1_case(registered: Any) -> None:
    found = failing(registered(LeaksLabelGradient()), dtypes=("float64",))
    assert set(found) == {c.name for c in cases.CATALOG if c.v1}
    assert all(q.startswith("v1_dlabels/") for qs in found.values() for q in qs)


def test_a_wrong_forward_mode_fails_exactly_where_labels_do_not_sum_to_1(
        registered: Any) -> None:
    found = failing(registered(ForwardWithoutLabelTotal()), dtypes=("float64",))
    unnormalised = {c.name for c in cases.CATALOG if c.kind == "values" and c.options is None
                    and not np.allclose(
        (inp := cases.inputs(c.name, "float64")).labels.sum(axis=inp.axis), 1.0)}
    assert unnormalised >= {"unnormalised_labels", "zero_labels", "one_class"}
    assert set(found) == unnormalised
    assert all(q.startswith("jvp_loss/") for qs in found.values() for q in qs)


class Releasing(FakeBackend):
    """A correct backend that logs the mode and function of each ``run`` and its
    ``release``."""

    name = "fake-releasing"

    def __init__(self, log: list[Any]) -> None:
        super().__init__()
        self.log = log

    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
        self.log.append((mode, fn))
        return super().run(mode, fn, *args)

    def release(self) -> None:
        self.log.append("release")


class WithoutRelease(FakeBackend):
    """A correct backend without the optional ``release`` hook (as a duck-typed one)."""

    name = "fake-without-release"
    release = None  # type: ignore[assignment]


def test_run_all_releases_each_case_after_its_last_cell(registered: Any) -> None:
    log: list[Any] = []
    backend = registered(Releasing(log))
    targets = [(backend, "eager"), (backend, "trace"), (registered(WithoutRelease()), "eager")]
    records = runner.run_all(targets, ["seed", "rank1"], ["float32", "float64"])
    assert records and not [r for r in records if r.passed is False]
    assert log.count("release") == 2 and log[-1] == "release"  # once a case, each backend once
    first = log.index("release")
    for calls in (log[:first], log[first + 1:-1]):  # one case: the same calls in every mode
        assert calls and {fn for m, fn in calls if m == "eager"} == {
            fn for m, fn in calls if m == "trace"}
    assert runner.functions.cache_info().currsize == 0


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "third_party_backends.py"
    module.write_text("import test_conformance_broken\ntest_conformance_broken.register_all()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "xent", "conformance", "--import", "third_party_backends",
         *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def test_cli_fails_a_broken_backend_and_names_the_cases(tmp_path: Path) -> None:
    result = _cli("--backend", "broken-ignores-axis", "--backend", "fake", "--dtype", "float32",
                  "--case", "seed", "--case", "rank3_axis0", "--case", "rank3_axis1",
                  "--json", str(tmp_path / "out.json"), tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert fails and all("broken-ignores-axis/" in line for line in fails)
    exact = [line for line in fails if " vs " not in line]  # the rest: pairwise agreement
    assert {"rank3_axis0", "rank3_axis1"} == {line.split()[2] for line in exact}
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["passed"] is False
    failed = {(r["backend"], r["case"]) for r in document["records"] if r["status"] == "fail"
              and r["against"] == "exact"}
    assert failed == {("broken-ignores-axis", "rank3_axis0"),
                      ("broken-ignores-axis", "rank3_axis1")}


def test_cli_passes_a_correct_third_party_backend(tmp_path: Path) -> None:
    result = _cli("--backend", "fake", "--case", "seed", "--case", "masked", "--case",
                  "sparse_out_of_range", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "0 failed" in result.stdout


def test_cli_runs_a_backend_from_the_entry_point_group(
    registered: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import EntryPoint

    import xent.cli

    point = EntryPoint(name="fake", value=f"{__name__}:FakeBackend",
                       group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [point] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert "fake" in registry.available()
    status = xent.cli.main(["conformance", "--backend", "fake", "--case", "masked",
                            "--dtype", "float32"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.splitlines()[0].split() == ["case", "fake"]
