"""The case catalog: named, deterministic inputs, each run in every dtype.

A case builds its inputs in float64 (from a generator seeded by its name, so every run
sees the same numbers), given the target dtype so that it can aim at that dtype's limits;
:func:`inputs` then rounds them to the dtype. The exact reference is computed from the
*rounded* values, so only the backend's arithmetic is measured.

Dense labels are always given; sparse labels are given explicitly or derived from one-hot
dense labels (other cases have no sparse quantities). Sparse labels are int64 (NumPy's
default) except in ``sparse_edges``, which uses int32.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xent.conformance.metric import EPS

DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class Inputs:
    """One case in one dtype: arrays to pass to a backend, and their exact float64 values."""

    logits: np.ndarray  # in the target dtype
    labels: np.ndarray  # dense, in the target dtype
    sparse: np.ndarray | None  # integer class indices, or None
    axis: int  # as given to xent (may be negative)
    options: Mapping[str, Any] = field(default_factory=dict)  # loss options, NumPy values

    @property
    def exact_logits(self) -> np.ndarray:
        return self.logits.astype(np.float64)

    @property
    def exact_labels(self) -> np.ndarray:
        return self.labels.astype(np.float64)

    @property
    def class_axis(self) -> int:
        return self.axis % self.logits.ndim


Built = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


@dataclass(frozen=True)
class Case:
    """A named input with the conventions it exercises.

    ``build(rng, dtype)`` returns float64 ``(logits, dense_labels, sparse_labels_or_None)``.
    ``relative`` names the quantities held to relative error (metric ``eps*|exact|``).
    ``v1`` adds the ``compat.v1`` gradient checks (no label gradient; logits gradient as
    TF2's): they differ from TF2's only by a ``stop_gradient``, so a few cases that stress
    it (masks, NaN rows, soft labels, another axis) carry them, to keep the suite fast.
    ``kind`` is ``"values"``, or ``"out_of_range"`` for the sparse-label range check.
    ``options(rng, logits, labels, sparse)`` gives the loss options every call of the case
    passes (DESIGN section 6), NumPy values exact in every dtype; None: no options."""

    name: str
    doc: str
    build: Callable[[np.random.Generator, str], Built]
    axis: int = -1
    relative: frozenset[str] = field(default_factory=frozenset)
    v1: bool = False
    kind: str = "values"
    options: Callable[..., dict[str, Any]] | None = None


def _one_hot(index: np.ndarray, num_classes: int, axis: int = -1) -> np.ndarray:
    index = np.asarray(index)
    out = np.zeros(index.shape + (num_classes,))
    np.put_along_axis(out, index[..., None], 1.0, axis=-1)
    return np.moveaxis(out, -1, axis)


#: The shape of most 2-D cases: one shape lets a backend's compiled kernels be reused
#: across cases (JAX and XLA compile per shape).
R, C = 8, 6


def _labels(rng: np.random.Generator, rows: int = R, classes: int = C) -> np.ndarray:
    return _one_hot(rng.integers(0, classes, rows), classes)


def _random(scale: float) -> Callable[..., Built]:
    def build(rng: np.random.Generator, dtype: str) -> Built:
        return rng.normal(scale=scale, size=(R, C)), _labels(rng), None
    return build


def _seed(rng: np.random.Generator, dtype: str) -> Built:
    x = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
    return x, np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), None


def _logits_1e4(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.choice([-1e4, 1e4], size=(R, C)) + rng.normal(scale=20.0, size=(R, C))
    x[0] = -1e4 + rng.normal(scale=20.0, size=C)  # every logit near -1e4: exp(x) underflows
    x[1] = 1e4 + rng.normal(scale=20.0, size=C)  # every logit near +1e4: exp(x) overflows
    return x, _labels(rng), None


def _near_max(rng: np.random.Generator, dtype: str) -> Built:
    top = float(_finfo_max(dtype))
    x = rng.uniform(top / 4, top / 2, size=(R, C))
    x[R // 2 :] *= -1.0  # rows near -max; no row mixes signs (logits - max would overflow)
    return x, _labels(rng), None


def _near_ties(rng: np.random.Generator, dtype: str) -> Built:
    ulp = 2.0 * EPS[dtype]  # spacing of the dtype in [2, 4)
    x = 2.0 + ulp * rng.integers(-3, 4, size=(R, C))
    x[0] = 2.0  # an exact tie
    return x, _labels(rng), None


def _confident(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.uniform(-11.5, -10.5, size=(R, C))
    k = rng.integers(0, C, R)
    x[np.arange(R), k] = 10.0  # loss = log1p(sum exp(x_j - 10)) ~ 5 exp(-21) ~ 4e-9
    return x, _one_hot(k, C), None


def _masked(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.normal(size=(R, C))
    masked = rng.random((R, C)) < 0.35
    k = rng.integers(0, C, R)
    masked[np.arange(R), k] = False  # the labelled class is never masked
    x[masked] = -np.inf
    y = _one_hot(k, C)
    soft = rng.uniform(0.1, 1.0, size=(R // 2, C)) * ~masked[R // 2 :]
    y[R // 2 :] = soft / soft.sum(axis=1, keepdims=True)  # soft labels, 0 on masked classes
    return x, y, np.argmax(y, axis=1)


def _masked_all_but_one(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.normal(size=(R, C))
    x[0, [0, 1, 3, 4, 5]] = -np.inf  # only class 2 left: softmax is one-hot, loss 0
    x[1, 1:] = -np.inf  # only class 0 left
    x[2, [0, 4]] = -np.inf
    return x, _one_hot(np.array([2, 0, 1, 3, 0, 5, 4, 1]), C), None


def _nan_row(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.normal(size=(R, C))
    x[2, 1] = np.nan
    return x, _labels(rng), None


def _inf_rows(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.normal(size=(R, C))
    x[1, 2] = np.inf  # NaN row; gradients unspecified
    x[3] = -np.inf  # every class masked: NaN row; gradients unspecified
    return x, _labels(rng), None


def _soft_labels(rng: np.random.Generator, dtype: str) -> Built:
    return rng.normal(size=(R, C)), rng.dirichlet(np.ones(C), size=R), None


def _unnormalised_labels(rng: np.random.Generator, dtype: str) -> Built:
    y = rng.uniform(0.0, 2.0, size=(R, C))
    y[0] = _one_hot(np.array(3), C) * 3.5
    return rng.normal(size=(R, C)), y, None


def _zero_labels(rng: np.random.Generator, dtype: str) -> Built:
    return rng.normal(size=(R, C)), np.zeros((R, C)), None


def _rank1(rng: np.random.Generator, dtype: str) -> Built:
    return rng.normal(size=7), _one_hot(np.array(4), 7), None


def _rank3(axis: int) -> Callable[..., Built]:
    def build(rng: np.random.Generator, dtype: str) -> Built:
        shape = (3, 4, 5)  # distinct sizes: ignoring axis cannot go unnoticed
        c = shape[axis]
        rest = shape[:axis % 3] + shape[axis % 3 + 1 :]
        return (rng.normal(scale=2.0, size=shape),
                _one_hot(rng.integers(0, c, rest), c, axis), None)
    return build


def _one_class(rng: np.random.Generator, dtype: str) -> Built:
    y = np.array([[1.0], [0.5], [2.0], [0.0], [1.0]])
    return rng.normal(size=(5, 1)), y, np.zeros(5, np.int64)


def _large_classes(rng: np.random.Generator, dtype: str) -> Built:
    # a 1/8 grid in [-8, 8]: exact in every dtype, so one reference serves all four
    x = np.round(rng.normal(scale=2.5, size=(2, 50_000)) * 8).clip(-64, 64) / 8
    x[1, 12_345] = 8.0
    return x, _one_hot(np.array([31_337, 12_345]), 50_000), None


def _zero_batch(rng: np.random.Generator, dtype: str) -> Built:
    return np.zeros((0, C)), np.zeros((0, C)), np.zeros(0, np.int64)


def _sparse_edges(rng: np.random.Generator, dtype: str) -> Built:
    labels = np.array([0, C - 1] * (R // 2), np.int32)
    return rng.normal(size=(R, C)), _one_hot(labels, C), labels


def _out_of_range(rng: np.random.Generator, dtype: str) -> Built:
    # rows 0 and 1 have labels out of range for C = 6; the others are valid
    return rng.normal(size=(R, C)), _labels(rng), OUT_OF_RANGE_LABELS


# -- loss options (DESIGN section 6): dyadic values, exact in every dtype ---------------------
def _dyadic(rng: np.random.Generator, size: Any, low: int = 0, high: int = 12) -> np.ndarray:
    """Random multiples of 1/4 in [low/4, high/4]."""
    return rng.integers(low, high + 1, size=size) / 4


def _keep(rng: np.random.Generator, shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    """A random ``where`` mask that keeps at least one class in every row."""
    mask = rng.random(shape) < 0.7
    first = np.moveaxis(mask, axis, -1)
    first[..., rng.integers(0, shape[axis])] = True
    return mask


def _with(**make: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """An options builder: each keyword maps to ``f(rng, logits, labels, sparse)``."""
    def build(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
              sparse: np.ndarray | None) -> dict[str, Any]:
        return {k: f(rng, x, y, sparse) for k, f in make.items()}
    return build


def _row_weights(rng: np.random.Generator, x: np.ndarray, *_: Any) -> np.ndarray:
    w = _dyadic(rng, x.shape[:-1])
    w[0] = 0.0  # a row of weight 0
    return w


def _class_weights(rng: np.random.Generator, x: np.ndarray, *_: Any) -> np.ndarray:
    return _dyadic(rng, x.shape[-1], 1, 12)


def _where_mask(rng: np.random.Generator, x: np.ndarray, *_: Any) -> np.ndarray:
    return _keep(rng, x.shape)


def _smoothing(e: float) -> Callable[..., float]:
    return lambda *_: e


def _excluded_nan(rng: np.random.Generator, dtype: str) -> Built:
    """Logits with NaN at classes the ``where`` of the case excludes (never read)."""
    x = rng.normal(size=(R, C))
    k = rng.integers(0, C, R)
    return x, _one_hot(k, C), k


def _where_nan_options(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                       sparse: np.ndarray | None) -> dict[str, Any]:
    mask = _keep(rng, x.shape)
    mask[1, 0:2] = False  # row 1's label may sit on an excluded class: it contributes 0
    x[~mask] = np.nan  # the builder's float64 logits, before rounding: NaN where excluded
    return {"where": mask}


def _ignored(rng: np.random.Generator, dtype: str) -> Built:
    x = rng.normal(size=(R, C))
    k = rng.integers(0, C, R)
    k[[1, 4]] = IGNORE
    x[4] = np.nan  # an ignored row is never read: loss 0, gradient 0, even with NaN logits
    y = _one_hot(np.where(k == IGNORE, 0, k), C) * (k != IGNORE)[:, None]
    return x, y, k


def _masked_options(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                    sparse: np.ndarray | None) -> dict[str, Any]:
    # every -inf class excluded by where (so smoothing gives them no share), plus smoothing
    # and class weights: finite losses
    return {"where": np.isfinite(x), "label_smoothing": 0.125,
            "class_weights": _dyadic(rng, x.shape[-1], 1, 12)}


def _rank3_options(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                   sparse: np.ndarray | None) -> dict[str, Any]:
    # shape (3, 4, 5), classes on axis 1: a (4, 1) mask, (5,) row weights: both broadcast
    mask = rng.random((4, 1)) < 0.7
    mask[2] = True
    return {"where": mask, "weights": _dyadic(rng, 5), "class_weights": _dyadic(rng, 4, 1, 8),
            "label_smoothing": 0.25}


def _vocabulary_options(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                        sparse: np.ndarray | None) -> dict[str, Any]:
    # one [C] mask for every row (a vocabulary's) excluding classes 1 and 4, the maximum of
    # row 0 (a little above the kept classes) and of row 1 (far above); smoothing, class
    # weights
    mask = np.ones(x.shape[-1], bool)
    mask[[1, 4]] = False
    x[0, 1] = np.max(x[0][mask]) + 0.5
    x[1, 4] = np.max(x[1][mask]) + 8.0
    return {"where": mask, "label_smoothing": 0.25,
            "class_weights": _dyadic(rng, x.shape[-1], 1, 12)}


def _empty_batch_options(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                         sparse: np.ndarray | None) -> dict[str, Any]:
    return {"where": np.arange(x.shape[-1]) != 1, "weights": np.zeros(0),
            "class_weights": _dyadic(rng, x.shape[-1], 1, 12), "label_smoothing": 0.25}


#: ``ignore_index`` of the option cases (torch's default).
IGNORE = -100


#: The sparse labels of ``sparse_out_of_range``: 7 and -1 are outside ``[0, 6)``.
OUT_OF_RANGE_LABELS = np.array([7, -1, 2, 0, 5, 1, 3, 4], np.int64)

_RELATIVE = frozenset({"loss", "sparse_loss", "log_softmax"})

CATALOG: tuple[Case, ...] = (
    Case("seed", "the worked example of the seed Q&A (losses 0.4790107, 1.19967598)", _seed,
         v1=True),
    Case("random_1", "random normal logits, scale 1, 8 x 6, one-hot labels", _random(1.0)),
    Case("random_10", "random normal logits, scale 10", _random(10.0)),
    Case("random_100", "random normal logits, scale 100", _random(100.0)),
    Case("logits_1e4", "logits of +-1e4 (+- noise), rows all near -1e4 and +1e4", _logits_1e4),
    Case("near_max", "logits within a factor 2-4 of the dtype's largest finite value "
         "(the float32 limit in float32)", _near_max),
    Case("near_ties", "logits a few ulps apart around 2, and an exact tie", _near_ties),
    Case("confident", "confident, correct predictions: loss ~4e-9, below float32 eps; "
         "loss, sparse_loss and log_softmax held to relative error", _confident,
         relative=_RELATIVE),
    Case("masked", "some classes masked with -inf (label 0 there; one-hot and soft labels)",
         _masked, v1=True),
    Case("masked_all_but_one", "rows masked everywhere but one class", _masked_all_but_one,
         v1=True),
    Case("nan_row", "a NaN logit in one row among finite rows: NaN in that row only, "
         "gradients included", _nan_row, v1=True),
    Case("inf_rows", "a row with a +inf logit and a row of all -inf: NaN values "
         "(gradients unspecified)", _inf_rows),
    Case("soft_labels", "soft labels (rows sum to 1)", _soft_labels, v1=True),
    Case("unnormalised_labels", "labels that do not sum to 1 (not renormalised)",
         _unnormalised_labels, v1=True),
    Case("zero_labels", "all-zero labels: loss 0, dlogits 0", _zero_labels),
    Case("rank1", "rank-1 logits: one row, a scalar loss", _rank1),
    Case("rank3_axis0", "rank 3 (3, 4, 5), class axis 0", _rank3(0), axis=0),
    Case("rank3_axis1", "rank 3 (3, 4, 5), class axis 1", _rank3(1), axis=1, v1=True),
    Case("rank3_axis-1", "rank 3 (3, 4, 5), class axis -1", _rank3(-1), axis=-1),
    Case("one_class", "a single class: softmax 1, loss 0 for any label", _one_class),
    Case("large_classes", "2 rows of 50,000 classes", _large_classes),
    Case("zero_batch", "an empty batch: logits (0, 6)", _zero_batch),
    Case("sparse_edges", "sparse labels 0 and C-1 (int32)", _sparse_edges),
    Case("sparse_out_of_range", "sparse labels 7 and -1 with C = 6: ValueError naming them in "
         "eager modes, NaN in those rows in tracing modes", _out_of_range,
         kind="out_of_range"),
    # loss options (DESIGN section 6)
    Case("opt_weights", "row weights (one of them 0)", _random(1.0),
         options=_with(weights=_row_weights)),
    Case("opt_class_weights", "class weights", _random(1.0),
         options=_with(class_weights=_class_weights)),
    Case("opt_smoothing", "label smoothing 0.1", _random(3.0),
         options=_with(label_smoothing=_smoothing(0.1))),
    Case("opt_where", "a where mask; NaN logits at the excluded classes (never read); a "
         "label on an excluded class contributes 0", _excluded_nan,
         options=_where_nan_options),
    Case("opt_ignore_index", "sparse labels -100 ignored (one such row has NaN logits)",
         _ignored, options=_with(ignore_index=lambda *_: IGNORE,
                                 class_weights=_class_weights)),
    Case("opt_combined", "every option at once, soft labels", _soft_labels,
         options=_with(weights=_row_weights, class_weights=_class_weights,
                       label_smoothing=_smoothing(0.25), where=_where_mask)),
    Case("opt_masked", "-inf logits excluded by where, with smoothing and class weights "
         "(finite)", _masked, options=_masked_options),
    Case("opt_masked_smoothing", "-inf logits kept, with smoothing: +inf (the true value)",
         _masked, options=_with(label_smoothing=_smoothing(0.125))),
    Case("opt_nan_row", "a NaN row with every option: NaN in that row only", _nan_row,
         options=_with(weights=_row_weights, class_weights=_class_weights,
                       label_smoothing=_smoothing(0.25), where=_where_mask)),
    Case("opt_unnormalised", "unnormalised labels with smoothing and class weights",
         _unnormalised_labels, options=_with(class_weights=_class_weights,
                                             label_smoothing=_smoothing(0.5))),
    Case("opt_rank3_axis1", "rank 3 (3, 4, 5), class axis 1, broadcast where and weights, "
         "smoothing, class weights", _rank3(1), axis=1, options=_rank3_options),
    Case("opt_vocabulary", "one [C] where for every row (a vocabulary's), excluding the "
         "maximum of two rows; smoothing, class weights", _random(3.0),
         options=_vocabulary_options),
    Case("opt_zero_batch", "an empty batch with a [C] where, row and class weights, "
         "smoothing", _zero_batch, options=_empty_batch_options),
)

BY_NAME = {case.name: case for case in CATALOG}


def case_names() -> list[str]:
    return [case.name for case in CATALOG]


@functools.cache
def inputs(name: str, dtype: str) -> Inputs:
    """Case ``name`` rounded to ``dtype`` (deterministic; cached)."""
    case = BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    logits, labels, sparse = case.build(rng, dtype)
    options = {} if case.options is None else case.options(rng, logits, labels, sparse)
    target = _np_dtype(dtype)
    y = labels.astype(target)
    if sparse is None and _is_one_hot(labels, case.axis):
        sparse = np.argmax(labels, axis=case.axis).astype(np.int64)
    x = logits.astype(target)
    for a in (x, y, sparse, *options.values()):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return Inputs(x, y, sparse, case.axis, options)


@functools.cache
def tangents(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Forward-mode directions for case ``name`` in ``dtype``: ``(dlogits, dlabels)``, random
    multiples of 1/8 in [-2, 2] (exact in every dtype, the same in all four; few distinct
    values keep the exact reference fast on large cases). ``dlabels`` is None (labels held
    constant) where the case has a ``-inf`` logit: d/dlabels is ``+inf`` at a masked class,
    so a label direction through it is infinite, or NaN (``0 * inf``) for a zero component."""
    inp = inputs(name, dtype)
    rng = np.random.default_rng(zlib.crc32(f"{name}/tangents".encode()))
    target = _np_dtype(dtype)
    dx = (rng.integers(-16, 17, size=inp.logits.shape) / 8).astype(target)
    masked = bool(np.isneginf(inp.logits.astype(np.float64)).any()) or "where" in inp.options
    dy = None if masked else (rng.integers(-16, 17, size=inp.labels.shape) / 8).astype(target)
    for a in (dx, dy):
        if a is not None:
            a.setflags(write=False)
    return dx, dy


def _is_one_hot(labels: np.ndarray, axis: int) -> bool:
    if labels.size == 0:
        return False
    return bool(np.isin(labels, (0.0, 1.0)).all() and (labels.sum(axis=axis) == 1).all())


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _finfo_max(dtype: str) -> float:
    if dtype == "bfloat16":
        return 3.3895313892515355e38  # (2 - 2**-7) * 2**127
    return float(np.finfo(np.dtype(dtype)).max)
