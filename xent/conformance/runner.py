"""Run the catalog on a backend in one execution mode, and compare backends pairwise.

The computation under test is always a call of the public functions (``xent.softmax``,
``xent.log_softmax``, ``xent.softmax_cross_entropy_with_logits``,
``xent.sparse_softmax_cross_entropy_with_logits``, and
``xent.compat.v1.nn.softmax_cross_entropy_with_logits`` for the TF1 gradient) inside
``backend.run`` / ``backend.value_and_grad``, so dispatch and validation are exercised too.

Quantities (one :class:`Record` each, per backend, mode, case and dtype):

=============== ==========================================================================
softmax         ``run(xent.softmax(x, axis))``
log_softmax     ``run(xent.log_softmax(x, axis))``
loss            ``run(xent.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=axis))``
sparse_loss     ``run(xent.sparse_softmax_cross_entropy_with_logits(...))``
dlogits         ``value_and_grad`` of the dense loss: d/dlogits (and the value returned
                with it must be within the absolute tolerance of ``loss``)
dlabels         the same call: d/dlabels (TF2 semantics; ``+inf`` at a masked class)
sparse_dlogits  ``value_and_grad`` of the sparse loss: d/dlogits
v1_dlogits      ``value_and_grad`` of ``compat.v1.nn.softmax_cross_entropy_with_logits``
                (on the cases marked ``v1``)
v1_dlabels      the same call: no gradient may reach labels (None or zeros)
out_of_range    case ``sparse_out_of_range``: eager raises ValueError naming the label
                and C; a tracing mode gives NaN in those rows
jvp_softmax     ``backend.jvp`` (forward mode) of softmax along the case's fixed tangent
jvp_log_softmax the same for log_softmax
jvp_loss        the same for the dense loss, along tangents of logits and labels (labels
                held constant on cases with ``-inf`` logits: see ``cases.tangents``)
jvp_sparse_loss the same for the sparse loss (integer labels held constant)
=============== ==========================================================================

Gradient quantities are n/a on backends without autodiff, forward-mode ones on backends
that do not implement ``Backend.jvp``, and every quantity is n/a in a dtype the backend does
not list in ``dtypes``. The value returned with a gradient or a jvp must match too.

Modes: a backend's ``modes`` and ``transform_modes`` (:func:`modes_of`); the catalog runs
the same way in each. A case's calls are the same objects in every dtype and mode (jit
caches hit); :func:`run_all` releases them, and what the backends compiled for them, before
the next case (:func:`release`).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import xent
from xent import _dispatch
from xent.backends import Backend
from xent.compat.v1 import nn as v1nn
from xent.conformance import cases, metric
from xent.conformance.reference import Exact, exact
from xent.conformance.reference_options import exact_with_options

VALUES = ("softmax", "log_softmax", "loss", "sparse_loss")
GRADIENTS = ("dlogits", "dlabels", "sparse_dlogits", "v1_dlogits", "v1_dlabels")
FORWARD = ("jvp_softmax", "jvp_log_softmax", "jvp_loss", "jvp_sparse_loss")
#: the reductions of the option cases (values only)
REDUCED = ("loss_mean", "loss_weighted_mean", "sparse_loss_mean", "sparse_loss_weighted_mean")
QUANTITIES = VALUES + REDUCED + GRADIENTS + FORWARD
_REFERENCE_OF = {"v1_dlogits": "dlogits"}
#: the value a gradient or jvp call returns with it, and the quantity it must match
_VALUE_OF = {"dlogits": "loss", "sparse_dlogits": "sparse_loss", "v1_dlogits": "loss",
             "jvp_softmax": "softmax", "jvp_log_softmax": "log_softmax", "jvp_loss": "loss",
             "jvp_sparse_loss": "sparse_loss"}


def modes_of(backend: Backend) -> tuple[str, ...]:
    """Every mode the suite runs ``backend`` in: its execution modes, then its transforms."""
    return tuple(backend.modes) + tuple(getattr(backend, "transform_modes", ()))


def supports_options(backend: Backend) -> bool:
    """Whether ``backend`` implements the array operations the loss options are composed
    from (``Backend.where`` and the rest; the base class raises)."""
    where = getattr(type(backend), "where", None)
    return where is not None and where is not Backend.where


def has_forward_mode(backend: Backend) -> bool:
    """Whether ``backend`` implements :meth:`Backend.jvp` (the base class raises)."""
    jvp = getattr(type(backend), "jvp", None)
    return jvp is not None and jvp is not Backend.jvp


@dataclass(frozen=True)
class Record:
    """One check: a quantity of a case in a dtype on a backend in a mode.

    ``against`` is ``"exact"`` or, for pairwise agreement, the other ``backend/mode``.
    ``error`` and ``tolerance`` are in units of ``metric`` (``inf`` when unbounded, None when
    not measured); ``passed`` is None for n/a."""

    backend: str
    mode: str
    case: str
    dtype: str
    quantity: str
    passed: bool | None
    error: float | None = None
    tolerance: float | None = None
    metric: str = metric.ABSOLUTE
    against: str = "exact"
    detail: str = ""

    @property
    def status(self) -> str:
        return "n/a" if self.passed is None else "pass" if self.passed else "fail"

    @property
    def target(self) -> str:
        return f"{self.backend}/{self.mode}"

    @property
    def fraction(self) -> float | None:
        """``error / tolerance``: at most 1 passes."""
        if self.error is None or not self.tolerance:
            return None
        return self.error / self.tolerance

    def as_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["status"] = self.status
        if record["error"] is not None and not np.isfinite(record["error"]):
            record["error"] = None  # JSON has no infinity: see status and detail
        return record


@dataclass
class Evaluation:
    """The records of one (case, dtype, backend, mode) and the raw results, for pairwise."""

    records: list[Record]
    outputs: dict[str, np.ndarray]


@functools.cache
def reference(name: str, dtype: str) -> dict[str, Exact]:
    """The exact reference of case ``name`` in ``dtype`` (cached, shared by equal inputs)."""
    inp = cases.inputs(name, dtype)
    if inp.options:
        return exact_with_options(inp.exact_logits, inp.exact_labels, inp.sparse,
                                  inp.class_axis, inp.options, _exact_tangents(name, dtype))
    sparse = inp.sparse
    if sparse is not None:
        num_classes = inp.logits.shape[inp.class_axis]
        sparse = np.where((sparse >= 0) & (sparse < num_classes), sparse, 0).astype(np.int64)
    dx, dy = cases.tangents(name, dtype)
    return _exact_of(inp.exact_logits.tobytes(), inp.logits.shape, inp.exact_labels.tobytes(),
                     None if sparse is None else sparse.tobytes(), inp.class_axis,
                     dx.astype(np.float64).tobytes(),
                     None if dy is None else dy.astype(np.float64).tobytes())


def _exact_tangents(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    dx, dy = cases.tangents(name, dtype)
    return dx.astype(np.float64), None if dy is None else dy.astype(np.float64)


@functools.cache
def _exact_of(x: bytes, shape: tuple[int, ...], y: bytes, s: bytes | None,
              axis: int, dx: bytes, dy: bytes | None) -> dict[str, Exact]:
    logits = np.frombuffer(x).reshape(shape)
    labels = np.frombuffer(y).reshape(shape)
    sparse = None
    if s is not None:
        sparse = np.frombuffer(s, np.int64).reshape(shape[:axis] + shape[axis + 1 :])
    tangents = (np.frombuffer(dx).reshape(shape),
                None if dy is None else np.frombuffer(dy).reshape(shape))
    return exact(logits, labels, sparse, axis, tangents)


@functools.cache
def functions(name: str, dtype: str, backend: Backend) -> dict[str, Callable[..., Any]]:
    """The calls under test for case ``name`` in ``dtype`` (stable objects until
    :func:`release`, so jit caches can hit), with the case's options; each first checks that
    its logits dispatch to ``backend``."""
    inp = cases.inputs(name, dtype)
    axis, options = inp.axis, dict(inp.options)
    where = {"where": options["where"]} if "where" in options else {}
    dense = {k: v for k, v in options.items() if k != "ignore_index"}

    def mine(x: Any) -> Any:
        owner = _dispatch.owner(x)
        if owner is not None and owner is not backend:
            raise TypeError(f"{type(x).__module__}.{type(x).__qualname__} from "
                            f"{backend.name}.run dispatches to backend {owner.name!r}")
        return x

    def loss(reduction: str) -> Callable[..., Any]:
        return lambda y, x: xent.softmax_cross_entropy_with_logits(
            labels=y, logits=mine(x), axis=axis, reduction=reduction, **dense)

    def sparse_loss(reduction: str) -> Callable[..., Any]:
        return lambda y, x: xent.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=mine(x), axis=axis, reduction=reduction, **options)

    return {
        "softmax": lambda x: xent.softmax(mine(x), axis, **where),
        "log_softmax": lambda x: xent.log_softmax(mine(x), axis, **where),
        "loss": loss("none"),
        "sparse_loss": sparse_loss("none"),
        "loss_mean": loss("mean"),
        "loss_weighted_mean": loss("weighted_mean"),
        "sparse_loss_mean": sparse_loss("mean"),
        "sparse_loss_weighted_mean": sparse_loss("weighted_mean"),
        "v1": lambda y, x: v1nn.softmax_cross_entropy_with_logits(
            labels=y, logits=mine(x), dim=axis),
    }


def release(backends: Iterable[Backend]) -> None:
    """Forget the calls of :func:`functions` and have each of ``backends`` free what it
    compiled for them (``Backend.release``, optional on duck-typed backends): what
    :func:`run_all` does after each case, so that a run of the whole catalog keeps the
    programs of one case at a time, not of every case."""
    functions.cache_clear()
    for backend in {id(b): b for b in backends}.values():  # each once, hashable or not
        hook = getattr(backend, "release", None)
        if callable(hook):
            hook()


def quantities(name: str) -> list[str]:
    """The quantities case ``name`` checks."""
    if cases.BY_NAME[name].kind == "out_of_range":
        return ["out_of_range"]
    sparse = cases.inputs(name, "float64").sparse is not None
    case = cases.BY_NAME[name]
    return [q for q in QUANTITIES
            if (sparse or "sparse" not in q) and (case.v1 or not q.startswith("v1"))
            and (case.options is not None or q not in REDUCED)]


def evaluate(name: str, dtype: str, backend: Backend, mode: str) -> Evaluation:
    """Run case ``name`` in ``dtype`` on ``backend`` in ``mode``: one record per quantity."""
    case = cases.BY_NAME[name]
    wanted = quantities(name)

    def na(quantity: str, why: str) -> Record:
        return _na(backend, mode, name, dtype, quantity, why)

    if dtype not in backend.dtypes:
        why = f"{dtype}: not in the dtypes of {backend.name}"
        return Evaluation([na(q, why) for q in wanted], {})
    if case.options is not None and not supports_options(backend):
        why = f"loss options: {backend.name} does not implement Backend.where and the rest"
        return Evaluation([na(q, why) for q in wanted], {})
    limits = getattr(backend, "captured_option_limits", {}).get(mode)
    if case.options is not None and limits is not None:
        unmeasured, why = limits
        if "all" in unmeasured:
            return Evaluation([na(q, why) for q in wanted], {})
        limited = [q for q in wanted if q in unmeasured]
        wanted = [q for q in wanted if q not in unmeasured]
        evaluation = _evaluate(backend, mode, name, dtype, wanted)
        evaluation.records += [na(q, why) for q in limited]
        return evaluation
    return _evaluate(backend, mode, name, dtype, wanted)


def _na(backend: Backend, mode: str, name: str, dtype: str, quantity: str, why: str) -> Record:
    return Record(backend.name, mode, name, dtype, quantity, None, detail=why)


def _evaluate(backend: Backend, mode: str, name: str, dtype: str,
              wanted: list[str]) -> Evaluation:
    """The records of ``wanted`` quantities (see :func:`evaluate`)."""
    case = cases.BY_NAME[name]

    def na(quantity: str, why: str) -> Record:
        return _na(backend, mode, name, dtype, quantity, why)

    inp = cases.inputs(name, dtype)
    refs = reference(name, dtype)
    with xent.use_backend(backend):
        if case.kind == "out_of_range":
            return Evaluation([_out_of_range(backend, mode, dtype, inp, refs)], {})
        outputs, failures = _compute(backend, mode, name, dtype, inp,
                                     cases.tangents(name, dtype), wanted)
    records = []
    for q in wanted:
        if q in GRADIENTS + FORWARD and not backend.has_autodiff:
            records.append(na(q, f"gradients: {backend.name} has no autodiff"))
            continue
        if q in FORWARD and not has_forward_mode(backend):
            records.append(na(q, f"forward mode: {backend.name} does not implement jvp"))
            continue
        records.append(_check(backend, mode, name, dtype, q, outputs, failures, refs))
    return Evaluation(records, outputs)


def _metric_of(name: str, quantity: str, *targets: Backend) -> tuple[str, float]:
    """The relative metric where the case asks for it and every backend compared promises it
    (``Backend.relative_accuracy``); else the backward-error metric every backend meets."""
    if quantity in cases.BY_NAME[name].relative and all(
        getattr(b, "relative_accuracy", False) for b in targets
    ):
        return metric.RELATIVE, metric.RELATIVE_TOLERANCE
    return metric.ABSOLUTE, metric.TOLERANCE[quantity]


def _check(backend: Backend, mode: str, name: str, dtype: str, q: str,
           outputs: dict[str, Any], failures: dict[str, str], refs: dict[str, Exact]) -> Record:
    base = dict(backend=backend.name, mode=mode, case=name, dtype=dtype, quantity=q)
    if q in failures:
        return Record(**base, passed=False, error=np.inf, tolerance=_metric_of(name, q, backend)[1]
                      if q != "v1_dlabels" else 0.0, detail=failures[q])
    if q == "v1_dlabels":
        d = outputs.get(q)
        if d is None or not np.any(np.asarray(d, np.float64) != 0):
            return Record(**base, passed=True, error=0.0, tolerance=0.0, metric="zero",
                          detail="" if d is None else "zeros")
        a = np.asarray(d, np.float64)
        at = np.unravel_index(int(np.argmax(a != 0)), a.shape)
        return Record(**base, passed=False, error=np.inf, tolerance=0.0, metric="zero",
                      detail=f"a gradient reached labels under compat.v1: "
                             f"{a[at]:.9g} at {tuple(int(i) for i in at)}")
    kind, tol = _metric_of(name, q, backend)
    m = metric.measure(outputs.get(q), refs[_REFERENCE_OF.get(q, q)], dtype, kind)
    error, detail = m.error, m.detail
    value_key = _VALUE_OF.get(q)
    if value_key is not None:  # the value returned with the gradient must match too
        vtol = metric.TOLERANCE[value_key]  # absolute: `loss` itself carries the relative check
        v = metric.measure(outputs.get(q + ":value"), refs[value_key], dtype)
        if v.error / vtol > error / tol:
            error, detail = v.error * tol / vtol, f"the value returned with it: {v.detail}"
    return Record(**base, passed=bool(error <= tol), error=error, tolerance=tol, metric=kind,
                  detail=detail)


#: (result keys, "run", "grad" or "jvp", the function, its NumPy arguments, the tangents)
Call = tuple[tuple["str | None", ...], str, Callable[..., Any], tuple[np.ndarray, ...],
             tuple["np.ndarray | None", ...]]


def _plan(backend: Backend, name: str, dtype: str, inp: cases.Inputs,
          tangents: tuple[np.ndarray, Any]) -> list[Call]:
    """Every call a case may need."""
    fns = functions(name, dtype, backend)
    dx, dy = tangents
    plan: list[Call] = [
        (("softmax",), "run", fns["softmax"], (inp.logits,), ()),
        (("log_softmax",), "run", fns["log_softmax"], (inp.logits,), ()),
        (("loss",), "run", fns["loss"], (inp.labels, inp.logits), ()),
        (("dlogits:value", "dlabels", "dlogits"), "grad", fns["loss"], (inp.labels, inp.logits),
         ()),
        (("v1_dlogits:value", "v1_dlabels", "v1_dlogits"), "grad", fns["v1"],
         (inp.labels, inp.logits), ()),
        (("jvp_softmax:value", "jvp_softmax"), "jvp", fns["softmax"], (inp.logits,), (dx,)),
        (("jvp_log_softmax:value", "jvp_log_softmax"), "jvp", fns["log_softmax"],
         (inp.logits,), (dx,)),
        (("jvp_loss:value", "jvp_loss"), "jvp", fns["loss"], (inp.labels, inp.logits),
         (dy, dx)),
        (("loss_mean",), "run", fns["loss_mean"], (inp.labels, inp.logits), ()),
        (("loss_weighted_mean",), "run", fns["loss_weighted_mean"], (inp.labels, inp.logits),
         ()),
    ]
    if inp.sparse is not None:
        plan += [
            (("sparse_loss",), "run", fns["sparse_loss"], (inp.sparse, inp.logits), ()),
            (("sparse_dlogits:value", None, "sparse_dlogits"), "grad", fns["sparse_loss"],
             (inp.sparse, inp.logits), ()),
            (("jvp_sparse_loss:value", "jvp_sparse_loss"), "jvp", fns["sparse_loss"],
             (inp.sparse, inp.logits), (None, dx)),
            (("sparse_loss_mean",), "run", fns["sparse_loss_mean"], (inp.sparse, inp.logits),
             ()),
            (("sparse_loss_weighted_mean",), "run", fns["sparse_loss_weighted_mean"],
             (inp.sparse, inp.logits), ()),
        ]
    return plan


def _compute(backend: Backend, mode: str, name: str, dtype: str, inp: cases.Inputs,
             tangents: tuple[np.ndarray, Any],
             wanted: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every wanted quantity as NumPy, and the quantities whose call failed (with why)."""
    outputs: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for keys, how, fn, originals, directions in _plan(backend, name, dtype, inp, tangents):
        names = [k for k in keys if k is not None and ":" not in k and k in wanted]
        if not names or (how != "run" and not backend.has_autodiff):
            continue
        if how == "jvp" and not has_forward_mode(backend):
            continue
        args = [a.copy() for a in originals]  # writable, and checked for modification below
        result: Any
        try:
            if how == "run":
                result = backend.run(mode, fn, *args)
            elif how == "grad":
                result = backend.value_and_grad(mode, fn, *args)
            else:
                result = backend.jvp(mode, fn, tuple(args), tuple(
                    None if d is None else d.copy() for d in directions))
        except Exception as error:  # noqa: BLE001 - any failure of the backend is a result
            failures.update((n, _describe(error)) for n in names)
            continue
        if any(not np.array_equal(a, o, equal_nan=True) for a, o in zip(args, originals)):
            failures.update((n, "the backend modified its input array") for n in names)
        if how == "run":
            outputs[keys[0]] = _as_numpy(result)  # type: ignore[index]
            continue
        if not isinstance(result, tuple) or len(result) != len(keys):
            hook = "value_and_grad" if how == "grad" else "jvp"
            failures.update((n, f"{hook} returned {type(result).__name__}, not a "
                                f"{len(keys)}-tuple") for n in names)
            continue
        for key, value in zip(keys, result):
            if key is not None:
                outputs[key] = None if value is None else _as_numpy(value)
        if keys[1] == "dlabels" and outputs.get("dlabels") is None:
            failures.setdefault("dlabels", "no label gradient (TF2 semantics: "
                                           "d/dlabels = logsumexp - logits)")
    return outputs, failures


def _as_numpy(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"raised {type(error).__name__}: {text[0] if text else ''}"[:300]


def _out_of_range(backend: Backend, mode: str, dtype: str, inp: cases.Inputs,
                  refs: dict[str, Exact]) -> Record:
    base: dict[str, Any] = dict(backend=backend.name, mode=mode, case="sparse_out_of_range",
                                dtype=dtype, quantity="out_of_range", metric="raises")
    tracing = mode in backend.tracing_modes
    num_classes = inp.logits.shape[inp.class_axis]
    sparse = inp.sparse
    assert sparse is not None  # the out-of-range case has sparse labels
    try:
        got = backend.run(mode, functions("sparse_out_of_range", dtype, backend)["sparse_loss"],
                          sparse.copy(), inp.logits.copy())
    except ValueError as error:
        if tracing:
            return Record(**base, passed=False, detail=f"{mode} is a tracing mode: expected "
                          f"NaN rows, but it {_describe(error)}")
        message = str(error)
        named = re.search(rf"(?<![\d.]){num_classes}(?![\d.])", message) and any(
            re.search(rf"(?<![\d.]){v}(?![\d.])", message)
            for v in (int(s) for s in sparse if not 0 <= s < num_classes))
        return Record(**base, passed=bool(named), detail="" if named else
                      f"the ValueError does not name the bad label and C={num_classes}: "
                      f"{message.splitlines()[0] if message else ''!r}")
    except Exception as error:  # noqa: BLE001
        return Record(**base, passed=False, detail=_describe(error))
    if not tracing:
        return Record(**base, passed=False,
                      detail="eager mode: expected ValueError for labels 7 and -1, got a result")
    bad = (sparse < 0) | (sparse >= num_classes)
    m = metric.measure(got, _masked(refs["sparse_loss"], bad), dtype)
    tol = metric.TOLERANCE["sparse_loss"]
    return Record(**{**base, "metric": metric.ABSOLUTE}, passed=bool(m.error <= tol),
                  error=m.error, tolerance=tol, detail=m.detail)


def _masked(ref: Exact, nan: np.ndarray) -> Exact:
    """``ref`` with NaN expected where ``nan``."""
    return Exact(np.where(nan, np.nan, ref.hi), np.where(nan, 0.0, ref.lo), ref.scale, ref.care)


def pairwise(name: str, dtype: str,
             evaluations: Iterable[tuple[str, Evaluation]]) -> Iterator[Record]:
    """Agreement of every pair of targets (``backend/mode``) on case ``name`` in ``dtype``.

    The tolerance is the sum of the two targets' tolerances against the exact value."""
    refs = reference(name, dtype) if cases.BY_NAME[name].kind == "values" else {}
    done = [(t, e) for t, e in evaluations if e.outputs]
    for (ta, ea), (tb, eb) in itertools.combinations(done, 2):
        for q in quantities(name):
            if q not in ea.outputs or q not in eb.outputs or q == "v1_dlabels":
                continue
            kind, tol = _metric_of(name, q, _backend_of(ta), _backend_of(tb))
            m = metric.compare(ea.outputs[q], eb.outputs[q], refs[_REFERENCE_OF.get(q, q)],
                               dtype, kind)
            backend, mode = ta.split("/", 1)
            yield Record(backend, mode, name, dtype, q, bool(m.error <= 2 * tol), m.error,
                         2 * tol, kind, against=tb, detail=m.detail)


def _backend_of(target: str) -> Backend:
    return xent.backends.get(target.split("/", 1)[0])


def unexplained(records: Iterable[Record]) -> list[Record]:
    """The failed pairwise records that no failure against the exact reference explains
    (when both targets are within tolerance of the exact value, they agree within the sum
    of tolerances; so these point at the metric's or the reference's own assumptions)."""
    records = list(records)
    failed = {(r.target, r.case, r.dtype, r.quantity) for r in records
              if r.passed is False and r.against == "exact"}
    return [r for r in records if r.passed is False and r.against != "exact"
            and (r.target, r.case, r.dtype, r.quantity) not in failed
            and (r.against, r.case, r.dtype, r.quantity) not in failed]


def run_all(targets: Sequence[tuple[Backend, str]], case_names: Sequence[str],
            dtypes: Sequence[str], step: Callable[[str], None] | None = None) -> list[Record]:
    """Every case in every dtype on every target, then pairwise agreement per case and dtype.

    ``step(label)`` is called after each (case, dtype, target). What a case compiled is
    released before the next (:func:`release`)."""
    records: list[Record] = []
    for name in case_names:
        for dtype in dtypes:
            done = []
            for backend, mode in targets:
                evaluation = evaluate(name, dtype, backend, mode)
                records += evaluation.records
                done.append((f"{backend.name}/{mode}", evaluation))
                if step is not None:
                    step(f"{backend.name}/{mode} {name} {dtype}")
            records += pairwise(name, dtype, done)
        release(backend for backend, _ in targets)
    return records
