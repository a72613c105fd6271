"""``xent conformance --twins``: each framework twin against its native function, and the
same twin call on every backend and mode.

For each twin case (a twin call, the native call it mirrors, and NumPy inputs):

- ``native``: where the native framework is installed, the twin on that framework's tensors
  against the native function (loss and d/dlogits), in ``eps*scale`` units of float32;
- ``<backend>/<mode>``: the twin on every target against the reference: the native
  function's result where installed, else the twin on NumPy.

Records are :class:`~xent.conformance.runner.Record` with ``case="twin:<name>"``,
``quantity`` ``"loss"`` or ``"dlogits"`` and ``against`` ``"native <framework>"`` or
``"twin on <backend>/<mode>"``; they go to the same JSON report.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xent.backends import Backend
from xent.compat import optax as twin_optax
from xent.compat.jax import nn as twin_jax_nn
from xent.compat.keras import losses as twin_keras
from xent.compat.torch.nn import functional as twin_torch
from xent.compat.v1 import losses as twin_tf1
from xent.conformance import metric, report
from xent.conformance.runner import Record

TOLERANCE = 32.0  # eps*scale of float32, as the twin tests
Fn = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class TwinCase:
    """A twin call ``twin(labels, logits)``, its native twin ``native(labels, logits)`` (on
    the tensors of backend ``framework``, importing ``module``), and the inputs."""

    name: str
    module: str
    framework: str
    twin: Fn
    native: Callable[[], Fn]
    labels: np.ndarray
    logits: np.ndarray


_RNG = np.random.default_rng(0)
_X = (_RNG.normal(size=(6, 5)) * 3).astype(np.float32)
_X3 = (_RNG.normal(size=(3, 5, 2)) * 3).astype(np.float32)
_INDEX = np.array([0, 4, -100, 2, 1, 3])
_INDEX3 = np.array([[0, 4], [-100, 2], [1, 3]])
_PROBS = _RNG.dirichlet(np.ones(5), 6).astype(np.float32)
_P = np.exp(_X) / np.exp(_X).sum(1, keepdims=True)
_W = _RNG.uniform(0.5, 1.5, 5).astype(np.float32)
_ROWS = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 1.5], np.float32)
_MASK = _RNG.random((6, 5)) > 0.3
_MASK[1] = False  # a row with every class excluded


def _torch() -> Fn:
    import torch

    w = torch.tensor(_W)
    return lambda y, x: torch.nn.functional.cross_entropy(
        x, y, weight=w, label_smoothing=0.1)


def _torch_probs() -> Fn:
    import torch

    w = torch.tensor(_W)
    return lambda y, x: torch.nn.functional.cross_entropy(x, y, weight=w, reduction="sum")


def _optax(sparse: bool) -> Callable[[], Fn]:
    def make() -> Fn:
        import jax.numpy as jnp
        import optax

        fn = (optax.softmax_cross_entropy_with_integer_labels if sparse
              else optax.softmax_cross_entropy)
        return lambda y, x: fn(x, y, where=jnp.asarray(_MASK))
    return make


def _jax_nn() -> Fn:
    import jax
    import jax.numpy as jnp

    return lambda y, x: jax.nn.softmax(x, where=jnp.asarray(_MASK)) * y


def _keras_sparse() -> Fn:
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=4)
    return lambda y, x: loss(y, x, sample_weight=_ROWS)


def _keras_probs() -> Fn:
    import keras

    return lambda y, x: keras.losses.categorical_crossentropy(y, x)


def _tf1(sparse: bool, reduction: str) -> Callable[[], Fn]:
    def make() -> Fn:
        import tensorflow as tf

        losses = tf.compat.v1.losses
        if sparse:
            return lambda y, x: losses.sparse_softmax_cross_entropy(
                y, x, weights=_ROWS, reduction=reduction)
        return lambda y, x: losses.softmax_cross_entropy(
            y, x, weights=_ROWS, label_smoothing=0.2, reduction=reduction)
    return make


CATALOG: tuple[TwinCase, ...] = (
    TwinCase("torch cross_entropy [N,C,d] weight ignore smooth", "torch", "torch",
             lambda y, x: twin_torch.cross_entropy(x, y, weight=_W, label_smoothing=0.1),
             _torch, _INDEX3, _X3),
    TwinCase("torch cross_entropy probs weight sum", "torch", "torch",
             lambda y, x: twin_torch.cross_entropy(x, y, weight=_W, reduction="sum"),
             _torch_probs, _PROBS, _X),
    TwinCase("optax softmax_cross_entropy where", "optax", "jax",
             lambda y, x: twin_optax.softmax_cross_entropy(x, y, where=_MASK),
             _optax(False), _PROBS, _X),
    TwinCase("optax integer_labels where", "optax", "jax",
             lambda y, x: twin_optax.softmax_cross_entropy_with_integer_labels(
                 x, y, where=_MASK), _optax(True),
             _MASK.argmax(1), _X),  # a kept class (row 1 keeps none: 0 in both)
    TwinCase("jax.nn softmax where", "jax", "jax",
             lambda y, x: twin_jax_nn.softmax(x, where=_MASK) * y, _jax_nn,
             _MASK.astype(np.float32), _X),
    TwinCase("keras SparseCategoricalCrossentropy ignore_class sample_weight", "keras",
             "tensorflow",
             lambda y, x: twin_keras.SparseCategoricalCrossentropy(
                 from_logits=True, ignore_class=4)(y, x, sample_weight=_ROWS),
             _keras_sparse, np.abs(_INDEX) % 5, _X),
    TwinCase("keras categorical_crossentropy probabilities", "keras", "tensorflow",
             lambda y, x: twin_keras.categorical_crossentropy(y, x), _keras_probs,
             _PROBS, _P.astype(np.float32)),
    TwinCase("tf1 softmax_cross_entropy weights smoothing", "tensorflow", "tensorflow",
             lambda y, x: twin_tf1.softmax_cross_entropy(y, x, weights=_ROWS,
                                                         label_smoothing=0.2),
             _tf1(False, "weighted_sum_by_nonzero_weights"), _PROBS, _X),
    TwinCase("tf1 sparse_softmax_cross_entropy MEAN", "tensorflow", "tensorflow",
             lambda y, x: twin_tf1.sparse_softmax_cross_entropy(
                 y, x, weights=_ROWS, reduction="weighted_mean"),
             _tf1(True, "weighted_mean"), np.abs(_INDEX) % 5, _X),
)


def case_names() -> list[str]:
    return [f"twin:{c.name}" for c in CATALOG]


def _evaluate(backend: Backend, mode: str, fn: Fn, case: TwinCase
              ) -> tuple[np.ndarray, np.ndarray | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not backend.has_autodiff:
            return np.asarray(backend.run(mode, fn, case.labels, case.logits)), None
        value, _, grad = backend.value_and_grad(mode, fn, case.labels, case.logits)
        return np.asarray(value), np.asarray(grad)


def _error(got: np.ndarray | None, ref: np.ndarray | None) -> float | None:
    """Worst ``|got - ref|`` in units of float32 eps times the reference's scale (NaN
    matches NaN, an infinity matches itself); None when either is missing."""
    if got is None or ref is None:
        return None
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    finite = np.abs(ref[np.isfinite(ref)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    diff = np.where(same, 0.0, np.abs(got - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max(initial=0.0)) / (metric.EPS["float32"] * scale)


def _records(target: tuple[str, str], case: TwinCase, against: str,
             got: tuple[np.ndarray, np.ndarray | None],
             ref: tuple[np.ndarray, np.ndarray | None] | None, detail: str = ""
             ) -> list[Record]:
    out = []
    for quantity, g, r in (("loss", got[0], None if ref is None else ref[0]),
                           ("dlogits", got[1], None if ref is None else ref[1])):
        error = _error(g, r)
        passed = None if error is None else error <= TOLERANCE
        why = detail or ("no gradient on this backend" if g is None else "")
        out.append(Record(target[0], target[1], f"twin:{case.name}", "float32", quantity,
                          passed, error, TOLERANCE, metric.ABSOLUTE, against, why))
    return out


def run_all(targets: Sequence[tuple[Backend, str]], backends: dict[str, Backend],
            step: Callable[[str], None] | None = None) -> list[Record]:
    """Every twin case: against its native function (where installed) and on every target."""
    records: list[Record] = []
    for case in CATALOG:
        native_backend = backends.get(case.framework)
        reference, against = None, ""
        if native_backend is not None and importlib.util.find_spec(case.module):
            try:
                reference = _evaluate(native_backend, "eager", case.native(), case)
                against = f"native {case.module}"
            except Exception as error:  # noqa: BLE001 - reported as a failed record
                records.append(Record(case.framework, "eager", f"twin:{case.name}", "float32",
                                      "loss", False, detail=f"native raised {error!r}"[:300],
                                      against=f"native {case.module}"))
        if reference is None:  # no native: agreement with the twin on NumPy
            numpy_backend = backends.get("numpy")
            if numpy_backend is not None:
                reference = _evaluate(numpy_backend, "eager", case.twin, case)
                against = "twin on numpy/eager"
        for backend, mode in targets:
            try:
                got = _evaluate(backend, mode, case.twin, case)
            except Exception as error:  # noqa: BLE001 - a twin that raises fails its cell
                records.append(Record(backend.name, mode, f"twin:{case.name}", "float32",
                                      "loss", False, detail=f"raised {error!r}"[:300],
                                      against=against))
            else:
                records += _records((backend.name, mode), case, against, got, reference)
            if step is not None:
                step(f"{case.name} {backend.name}/{mode}")
    return records


def matrix(records: Sequence[Record], targets: Sequence[tuple[str, str]]) -> str:
    """One row per twin case, one column per backend/mode, like the core matrix."""
    by_cell: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        by_cell.setdefault((r.case, r.backend, r.mode), []).append(r)
    rows = [[name] + [report.cell(by_cell.get((name, b, m), [])) for b, m in targets]
            for name in case_names()]
    backends_row = ["twin case"] + [b if i == 0 or targets[i - 1][0] != b else ""
                                    for i, (b, _) in enumerate(targets)]
    return report._table([backends_row, [""] + [m for _, m in targets]], rows)


def failures(records: Sequence[Record]) -> str:
    return "\n".join(
        f"FAIL {r.target} {r.case} {r.quantity} vs {r.against}: "
        + (f"error {r.error:.3g} > {r.tolerance:g} {r.metric}" if r.error is not None
           else r.detail)
        for r in records if r.passed is False)
