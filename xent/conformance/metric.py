"""How far a result is from the exact reference, and how far it may be.

An error is measured elementwise in units of ``eps(dtype) * scale`` (metric ``eps*scale``),
where ``eps`` is the machine epsilon of the *output* dtype (2**-10 float16, 2**-7 bfloat16,
2**-23 float32, 2**-52 float64) and ``scale`` bounds what rounding the inputs and the
intermediates by ``eps`` can change in that element (a backward-error bound). With
``lse = logsumexp(logits)`` and ``p = softmax(logits)``:

==============  ==============================================================  =========
quantity        scale (per element)                                             tolerance
==============  ==============================================================  =========
softmax         ``p_c * (1 + |logits_c| + |lse|)``                              8
log_softmax     ``|logits_c| + |lse|``                                          8
loss            ``sum_c |labels_c| * (|lse| + |logits_c|)``, labels != 0        8
sparse_loss     ``|lse| + |logits_label|``                                      8
dlogits         ``sum|labels| * p_c * (1 + |logits_c| + |lse|) + |labels_c|``   8
sparse_dlogits  as dlogits, with one-hot labels                                 8
dlabels         ``|logits_c| + |lse|``                                          8
v1_dlogits      as dlogits                                                      8
v1_dlabels      none: the labels gradient must be absent or all zeros           exact
jvp_log_softmax ``|dx_c| + sum_k p_k |dx_k| (2 + |logits_k| + |lse|)``             8
jvp_softmax     ``p_c * (scale(jvp_log_softmax)_c + |t_c| (1 + |logits_c| +       8
                |lse|))``, ``t`` the exact jvp_log_softmax
jvp_loss        ``sum_c |dx_c| (scale(dlogits)_c + |dlogits_c|) + |dy_c|          8
                (|logits_c| + |lse| + |dlabels_c|)``
jvp_sparse_loss as jvp_loss, with sparse_dlogits and no dy                        8
loss_mean, ...  (option cases) ``(sum_r scale_r + n sum_r |loss_r|) / |denominator|   8
                + n |exact|``: the rows' scales, and the rounding of two sums of n
relative        ``|exact|`` (metric ``eps*|exact|``) where a case asks for it   32
                and the backend promises it (``Backend.relative_accuracy``):
                loss, sparse_loss, log_softmax of case ``confident``
==============  ==============================================================  =========

The relative rows hold the backends that promise it (the NumPy reference, TensorFlow) to
relative accuracy for confident predictions: a loss far below eps is still accurate to a few
eps of itself. The others (torch, JAX: their fused kernels compute ``log(sum(exp))``, exact
to a few eps *absolute*) are held to the backward-error metric on that case too.

Every unit adds the output dtype's smallest normal number, so underflow (flushed
subnormals included) costs at most one unit. Non-finite values must match exactly: NaN where
the reference is NaN, the same infinity where it is infinite; any other non-finite value,
a wrong shape or a wrong dtype is an unbounded error (``inf``). Elements the semantics leave
unspecified (gradients of a row with a ``+inf`` logit or with every logit ``-inf``) are
not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xent.conformance.reference import Exact

#: Machine epsilon (spacing of 1.0) and smallest normal number of each output dtype.
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}
TINY = {"float16": 2.0**-14, "bfloat16": 2.0**-126, "float32": 2.0**-126,
        "float64": 2.0**-1022}

#: Where round-to-nearest overflows to infinity in each output dtype: max + half an ulp.
OVERFLOW = {"float16": 65520.0, "bfloat16": (2 - 2.0**-8) * 2.0**127,
            "float32": (2 - 2.0**-24) * 2.0**127, "float64": np.inf}

ABSOLUTE = "eps*scale"
RELATIVE = "eps*|exact|"

#: quantity -> tolerance in units of its metric (the same for every dtype). Accurate
#: kernels (NumPy's, torch's, TF's, XLA's) stay below 2 units on every case, so 8 leaves
#: room for other hardware and summation orders while a relative error of 3e-4 in float32
#: (about 2500 eps) fails by far.
TOLERANCE: dict[str, float] = dict.fromkeys(
    ("softmax", "log_softmax", "loss", "sparse_loss", "dlogits", "dlabels", "sparse_dlogits",
     "v1_dlogits", "jvp_softmax", "jvp_log_softmax", "jvp_loss", "jvp_sparse_loss",
     "loss_mean", "loss_weighted_mean", "sparse_loss_mean", "sparse_loss_weighted_mean"), 8.0)
#: Tolerance of the relative metric, where a case asks for it: ``log1p``-style kernels stay
#: below 7 units (the ``exp(logits - max)`` terms carry ``eps * |logits - max|`` each).
RELATIVE_TOLERANCE = 32.0


@dataclass(frozen=True)
class Measure:
    """The worst elementwise error (``inf`` when unbounded) and what it was."""

    error: float
    detail: str = ""


def measure(got: object, ref: Exact, dtype: str, metric: str = ABSOLUTE) -> Measure:
    """Worst error of ``got`` against the exact reference ``ref``, in units of ``metric``.

    >>> import numpy as np
    >>> from xent.conformance.reference import exact
    >>> ref = exact(np.array([[0.5, 1.5, 0.1]]), None, None, 1)["softmax"]
    >>> round(measure(np.float32([[0.227863, 0.61939586, 0.15274114]]), ref, "float32").error, 2)
    0.07
    >>> measure(np.array([[0.2, 0.6, 0.2]], np.float32), ref, "float32").error > 1e4
    True
    """
    if got is None:
        return Measure(np.inf, "no result")
    array = np.asarray(got)
    if array.shape != ref.shape:
        return Measure(np.inf, f"shape {array.shape}, expected {ref.shape}")
    if array.dtype.name != dtype:
        return Measure(np.inf, f"dtype {array.dtype.name}, expected {dtype}")
    g = array.astype(np.float64)
    unit_of = np.abs(ref.hi) if metric == RELATIVE else ref.scale
    hi, lo = ref.hi, ref.lo
    over = np.abs(hi) >= OVERFLOW[dtype]
    if over.any():  # the correctly rounded result is an infinity (e.g. a jvp near the limit)
        hi, lo = np.where(over, np.copysign(np.inf, hi), hi), np.where(over, 0.0, lo)
    return _worst(g, hi, lo, EPS[dtype] * unit_of + TINY[dtype], ref.care, "exact")


def compare(a: np.ndarray, b: np.ndarray, ref: Exact, dtype: str,
            metric: str = ABSOLUTE) -> Measure:
    """Worst disagreement of two backends' results, in the units of :func:`measure`."""
    for x in (a, b):
        if x is None or np.shape(x) != ref.shape or np.asarray(x).dtype.name != dtype:
            return Measure(np.inf, "not comparable (missing, or wrong shape or dtype)")
    unit_of = np.abs(ref.hi) if metric == RELATIVE else ref.scale
    return _worst(np.asarray(a, np.float64), np.asarray(b, np.float64), np.zeros(ref.shape),
                  EPS[dtype] * unit_of + TINY[dtype], ref.care, "other")


def _worst(g: np.ndarray, hi: np.ndarray, lo: np.ndarray, unit: np.ndarray,
           care: np.ndarray, name: str) -> Measure:
    if g.size == 0:
        return Measure(0.0)
    with np.errstate(all="ignore"):
        g_nan, r_nan = np.isnan(g), np.isnan(hi)
        r_inf = np.isinf(hi)
        both_finite = np.isfinite(g) & np.isfinite(hi)
        wrong = care & ~both_finite & ~(g_nan & r_nan) & ~(r_inf & (g == hi))
        if wrong.any():
            at = _index(np.argmax(wrong), g.shape)
            return Measure(np.inf, f"{_fmt(g[at])} where {name} is {_fmt(hi[at])} at {at}")
        err = np.where(care & both_finite, np.abs((g - hi) - lo) / unit, 0.0)
    flat = int(np.argmax(err))
    at = _index(flat, g.shape)
    worst = float(err[at])
    if worst == 0.0:
        return Measure(0.0)
    return Measure(worst, f"{_fmt(g[at])} where {name} is {_fmt(hi[at] + lo[at])} at {at}")


def _index(flat: int | np.integer, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape))


def _fmt(value: float) -> str:
    return f"{float(value):.9g}"
