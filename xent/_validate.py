"""Argument checks and their messages, written once for every backend.

Every function here works on plain Python values (shapes as tuples whose unknown
dimensions are ``None``, dtypes as NumPy-style names such as ``"float32"``), so the
same check and the same message apply to NumPy arrays, torch tensors, TF eager and
graph tensors and JAX tracers alike. Each message starts with the argument it is
about.

A shape of ``None`` is an unknown rank (a TF graph tensor traced without a shape): what
needs the rank is then left to the backend, which checks it when the graph runs with the
message templates below (the same text, filled in with run-time values).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
INTEGER_DTYPES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)
REAL_DTYPES = FLOAT_DTYPES | INTEGER_DTYPES | {"bool"}
REDUCTIONS = ("none", "sum", "mean", "weighted_mean")

Shape = Sequence["int | None"]

#: Message templates, also filled in at graph run time by backends whose ranks or dimensions
#: are unknown while tracing (TensorFlow), so that both report the same text.
SCALAR_LOGITS = "logits: must have rank >= 1 (a class axis), got a scalar of shape ()"
AXIS_OUT_OF_RANGE = (
    "axis: {axis} is out of range for logits of rank {rank} (valid: {low} to {high})"
)
EMPTY_CLASS_AXIS = (
    "logits: the class axis {axis} of shape {shape} has size 0; "
    "softmax over no classes is undefined"
)
DENSE_LABELS_SHAPE = (
    "labels: shape {shape} does not match logits shape {logits_shape}; dense labels must "
    "have the shape of logits (for class indices use sparse_softmax_cross_entropy_with_logits)"
)
SPARSE_LABELS_SHAPE = (
    "labels: shape {shape} does not match {expected}, the logits shape {logits_shape} "
    "without the class axis {axis}"
)


def _fmt(shape: Shape | None) -> str:
    if shape is None:
        return "(unknown rank)"
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def _int_axis(axis: object) -> int:
    if type(axis) is not int:
        if isinstance(axis, bool) or not hasattr(axis, "__index__"):
            raise TypeError(f"axis: expected an int, got {type(axis).__name__} {axis!r}")
        axis = axis.__index__()
    return axis  # type: ignore[return-value]


def normalize_axis(axis: object, rank: int) -> int:
    """Return ``axis`` as a non-negative int, or raise TypeError / ValueError."""
    axis = _int_axis(axis)
    if not -rank <= axis < rank:
        raise ValueError(AXIS_OUT_OF_RANGE.format(axis=axis, rank=rank, low=-rank, high=rank - 1))
    return axis % rank


def check_logits(shape: Shape | None, dtype: str, axis: object) -> int:
    """Check rank, dtype, axis and the class-axis size; return the normalised axis.

    With an unknown rank (``shape`` None) only the dtype and the type of ``axis`` can be
    checked: ``axis`` is returned as given (possibly negative) for the backend."""
    if dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"logits: expected a floating dtype (float16, bfloat16, float32 or float64), "
            f"got {dtype}"
        )
    if shape is None:
        return _int_axis(axis)
    rank = len(shape)
    if type(axis) is int and -rank <= axis < rank:  # the common case, checked fast
        axis %= rank
    elif rank == 0:
        raise ValueError(SCALAR_LOGITS)
    else:
        axis = normalize_axis(axis, rank)
    if shape[axis] == 0:
        raise ValueError(EMPTY_CLASS_AXIS.format(axis=axis, shape=_fmt(shape)))
    return axis


def check_dense_labels(shape: Shape | None, dtype: str, logits_shape: Shape | None) -> None:
    """Dense labels: a real dtype and exactly the shape of logits (when both ranks are
    known; else the backend compares the shapes at run time)."""
    if dtype not in REAL_DTYPES:
        raise TypeError(f"labels: expected real-valued labels, got dtype {dtype}")
    if shape is None or logits_shape is None:
        return
    if shape != logits_shape and not _compatible(shape, logits_shape):
        raise ValueError(
            DENSE_LABELS_SHAPE.format(shape=_fmt(shape), logits_shape=_fmt(logits_shape))
        )


def check_sparse_labels(
    shape: Shape | None, dtype: str, logits_shape: Shape | None, axis: int
) -> None:
    """Sparse labels: an integer dtype and the shape of logits without ``axis`` (when both
    ranks are known; else the backend compares the shapes at run time)."""
    if dtype not in INTEGER_DTYPES:
        raise TypeError(f"labels: sparse labels must be integer class indices, got dtype {dtype}")
    if shape is None or logits_shape is None:
        return
    if axis == len(logits_shape) - 1:  # the common case, one slice
        expected = tuple(logits_shape[:axis])
    else:
        expected = tuple(logits_shape[:axis]) + tuple(logits_shape[axis + 1 :])
    if shape != expected and not _compatible(shape, expected):
        raise ValueError(SPARSE_LABELS_SHAPE.format(
            shape=_fmt(shape), expected=_fmt(expected), logits_shape=_fmt(logits_shape),
            axis=axis))


def check_reduction(reduction: object) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: expected 'none', 'sum', 'mean' or 'weighted_mean', got {reduction!r}"
        )


# -- loss options (DESIGN section 6) ---------------------------------------------------------
def check_label_smoothing(value: object) -> float:
    """A real number in [0, 1] (a Python or NumPy scalar, not a tensor); returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"label_smoothing: expected a real number in [0, 1], got {type(value).__name__} "
            f"{value!r}"
        )
    e = float(value)
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"label_smoothing: expected a real number in [0, 1], got {value!r}")
    return e


def check_ignore_index(value: object) -> int:
    """An int (a Python or NumPy integer, not a bool); returned as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"ignore_index: expected an int class index (e.g. -100), got "
            f"{type(value).__name__} {value!r}"
        )
    return int(value)


def check_class_weights(shape: Shape | None, dtype: str, num_classes: int | None) -> None:
    """A floating vector of one weight per class: shape ``[C]``."""
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"class_weights: expected floating class weights, got dtype {dtype}")
    if shape is None:
        return
    if len(shape) != 1 or not (shape[0] == num_classes or None in (shape[0], num_classes)):
        c = "C" if num_classes is None else num_classes
        raise ValueError(
            f"class_weights: expected shape ({c},), one weight per class, got shape {_fmt(shape)}"
        )


def check_weights(shape: Shape | None, dtype: str, loss_shape: Shape | None) -> None:
    """Real weights that broadcast (NumPy rules) to the loss shape, the logits' without axis."""
    if dtype not in REAL_DTYPES:
        raise TypeError(f"weights: expected real-valued weights, got dtype {dtype}")
    if not _broadcasts_to(shape, loss_shape):
        raise ValueError(
            f"weights: shape {_fmt(shape)} does not broadcast to the loss shape "
            f"{_fmt(loss_shape)} (the logits shape without the class axis)"
        )


def check_where(shape: Shape | None, dtype: str, logits_shape: Shape | None) -> None:
    """A boolean mask that broadcasts (NumPy rules) to the logits shape."""
    if dtype != "bool":
        raise TypeError(f"where: expected a boolean mask, got dtype {dtype}")
    if not _broadcasts_to(shape, logits_shape):
        raise ValueError(
            f"where: shape {_fmt(shape)} does not broadcast to the logits shape "
            f"{_fmt(logits_shape)}"
        )


def _broadcasts_to(shape: Shape | None, target: Shape | None) -> bool:
    """NumPy broadcasting of ``shape`` to exactly ``target`` (unknown dims match anything;
    an unknown rank, None, matches any shape: it is checked when the graph runs)."""
    if shape is None or target is None:
        return True
    if len(shape) > len(target):
        return False
    return all(a == 1 or a == b or a is None or b is None
               for a, b in zip(reversed(shape), reversed(target)))


def label_out_of_range(value: int, num_classes: int) -> ValueError:
    return ValueError(
        f"labels: sparse label {value} is out of range [0, {num_classes}) "
        f"for {num_classes} classes"
    )


def positional_arguments(function: str) -> TypeError:
    return TypeError(
        f"{function}: labels and logits are keyword-only; call {function}(labels=..., "
        "logits=...). (TF < 1.0 and optax take (logits, labels), TF2 takes (labels, logits): "
        "a positional call is how they get swapped.)"
    )


def mixed_frameworks(logits_framework: str, other_framework: str,
                     argument: str = "labels") -> TypeError:
    return TypeError(
        f"{argument}: a {other_framework} tensor cannot be combined with {logits_framework} "
        f"logits; pass both as {logits_framework} tensors (NumPy arrays and Python "
        "sequences are converted automatically)"
    )


def _compatible(a: Shape, b: Shape) -> bool:
    """Equal shapes, where an unknown (None) dimension matches anything."""
    return len(a) == len(b) and all(x == y or x is None or y is None for x, y in zip(a, b))
