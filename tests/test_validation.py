"""Bad input: one clear error naming the argument, the same type and message on every backend."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xent

LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], np.float32)
LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
dense = xent.softmax_cross_entropy_with_logits
sparse = xent.sparse_softmax_cross_entropy_with_logits


def native(backend, array):  # type: ignore[no-untyped-def]
    return backend.asarray(array, dtype=array.dtype.name)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda b: dense(labels=native(b, LABELS[:, :2]), logits=native(b, LOGITS)), ValueError,
         "labels: shape (2, 2) does not match logits shape (2, 3)"),
        (lambda b: sparse(labels=native(b, np.array([[1, 2]])), logits=native(b, LOGITS)),
         ValueError, "labels: shape (1, 2) does not match (2,), the logits shape (2, 3) without "
         "the class axis 1"),
        (lambda b: xent.softmax(native(b, np.float32(1.0).reshape(()))), ValueError,
         "logits: must have rank >= 1"),
        (lambda b: xent.log_softmax(native(b, LOGITS), axis=2), ValueError,
         "axis: 2 is out of range for logits of rank 2 (valid: -2 to 1)"),
        (lambda b: xent.softmax(native(b, LOGITS), axis=1.0), TypeError,
         "axis: expected an int, got float 1.0"),
        (lambda b: xent.softmax(native(b, np.array([[1, 2]], np.int32))), TypeError,
         "logits: expected a floating dtype (float16, bfloat16, float32 or float64), got int32"),
        (lambda b: sparse(labels=native(b, np.array([1.0, 2.0], np.float32)),
                          logits=native(b, LOGITS)), TypeError,
         "labels: sparse labels must be integer class indices, got dtype float32"),
        (lambda b: sparse(labels=native(b, np.array([1, 3])), logits=native(b, LOGITS)),
         ValueError, "labels: sparse label 3 is out of range [0, 3) for 3 classes"),
        (lambda b: sparse(labels=[-1, 0], logits=native(b, LOGITS)), ValueError,
         "labels: sparse label -1 is out of range [0, 3) for 3 classes"),
        (lambda b: dense(labels=native(b, np.zeros((2, 0), np.float32)),
                         logits=native(b, np.zeros((2, 0), np.float32))), ValueError,
         "logits: the class axis 1 of shape (2, 0) has size 0"),
        (lambda b: dense(labels=native(b, LABELS), logits=native(b, LOGITS), reduction="avg"),
         ValueError, "reduction: expected 'none', 'sum', 'mean' or 'weighted_mean', got 'avg'"),
        (lambda b: dense(native(b, LABELS), native(b, LOGITS)), TypeError,
         "softmax_cross_entropy_with_logits: labels and logits are keyword-only"),
        (lambda b: sparse(native(b, LOGITS), labels=[1, 2]), TypeError,
         "sparse_softmax_cross_entropy_with_logits: labels and logits are keyword-only"),
        (lambda b: dense(logits=native(b, LOGITS)), TypeError,
         "missing required keyword argument(s) labels"),
    ],
    ids=["dense-shape", "sparse-shape", "rank0", "axis-range", "axis-type", "int-logits",
         "float-sparse-labels", "sparse-range-high", "sparse-range-negative", "empty-classes",
         "reduction", "positional", "positional-logits", "missing-labels"],
)
def test_bad_input_error(backend, call, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=re.escape(message)):
        call(backend)


OPTION_ERRORS = [
    (dict(label_smoothing=1.5), ValueError,
     "label_smoothing: expected a real number in [0, 1], got 1.5"),
    (dict(label_smoothing=-0.1), ValueError,
     "label_smoothing: expected a real number in [0, 1], got -0.1"),
    (dict(label_smoothing=float("nan")), ValueError,
     "label_smoothing: expected a real number in [0, 1], got nan"),
    (dict(label_smoothing="0.1"), TypeError,
     "label_smoothing: expected a real number in [0, 1], got str '0.1'"),
    (dict(label_smoothing=True), TypeError,
     "label_smoothing: expected a real number in [0, 1], got bool True"),
    (dict(class_weights=np.ones(2, np.float32)), ValueError,
     "class_weights: expected shape (3,), one weight per class, got shape (2,)"),
    (dict(class_weights=np.ones((1, 3), np.float32)), ValueError,
     "class_weights: expected shape (3,), one weight per class, got shape (1, 3)"),
    (dict(class_weights=np.ones(3, np.int32)), TypeError,
     "class_weights: expected floating class weights, got dtype int32"),
    (dict(weights=np.ones(3, np.float32)), ValueError,
     "weights: shape (3,) does not broadcast to the loss shape (2,) (the logits shape "
     "without the class axis)"),
    (dict(weights=np.ones((2, 2), np.float32)), ValueError,
     "weights: shape (2, 2) does not broadcast to the loss shape (2,)"),
    (dict(weights=np.array(["a", "b"])), TypeError,
     "weights: expected real-valued weights, got dtype str"),
    (dict(where=np.ones((2, 3), np.float32)), TypeError,
     "where: expected a boolean mask, got dtype float32"),
    (dict(where=np.ones((2, 2), bool)), ValueError,
     "where: shape (2, 2) does not broadcast to the logits shape (2, 3)"),
    (dict(reduction="weighted"), ValueError,
     "reduction: expected 'none', 'sum', 'mean' or 'weighted_mean', got 'weighted'"),
]
OPTION_IDS = ["smoothing-high", "smoothing-negative", "smoothing-nan", "smoothing-str",
              "smoothing-bool", "class-weights-size", "class-weights-rank",
              "class-weights-int", "weights-shape", "weights-grow", "weights-str",
              "where-float", "where-shape", "reduction"]


def _native_options(backend, options):  # type: ignore[no-untyped-def]
    """The options as tensors of ``backend`` (NumPy arrays stay NumPy on NumPy)."""
    return {k: native(backend, v) if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"
            else v for k, v in options.items()}


@pytest.mark.parametrize("sparse_labels", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy-option", "native-option"])
@pytest.mark.parametrize("options, error, message", OPTION_ERRORS, ids=OPTION_IDS)
def test_bad_option_error(backend, options, error, message, sparse_labels,  # type: ignore[no-untyped-def]
                          as_tensor) -> None:
    if as_tensor:
        options = _native_options(backend, options)
    call = sparse if sparse_labels else dense
    labels = np.array([1, 2]) if sparse_labels else LABELS
    with pytest.raises(error, match=re.escape(message)):
        call(labels=native(backend, labels), logits=native(backend, LOGITS), **options)


@pytest.mark.parametrize("function", [xent.softmax, xent.log_softmax])
def test_bad_where_in_softmax(backend, function) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=re.escape("where: expected a boolean mask, got dtype")):
        function(native(backend, LOGITS), where=np.ones(3))
    with pytest.raises(ValueError, match=re.escape("where: shape (2,) does not broadcast")):
        function(native(backend, LOGITS), where=np.ones(2, bool))


def test_bad_ignore_index(backend) -> None:  # type: ignore[no-untyped-def]
    logits = native(backend, LOGITS)
    for bad in (1.5, "x", True, None.__class__):
        with pytest.raises(TypeError, match="ignore_index: expected an int class index"):
            sparse(labels=[1, 2], logits=logits, ignore_index=bad)
    with pytest.raises(TypeError, match="unexpected keyword argument 'ignore_index'"):
        dense(labels=LABELS, logits=logits, ignore_index=-100)  # type: ignore[call-arg]


@pytest.mark.parametrize("rows", [3, 100], ids=["few-labels", "many-labels"])
def test_ignored_rows_are_exempt_from_the_range_check(backend, rows: int) -> None:  # type: ignore[no-untyped-def]
    """The same errors and results whether the labels are few (read once, as Python ints:
    ``Backend.few_labels``) or many; an ``ignore_index`` no label equals changes nothing."""
    logits = native(backend, np.tile(LOGITS, (rows, 1))[:rows])
    labels = np.arange(rows) % 3
    labels[1] = -100
    bad = labels.copy()
    bad[-1] = 7
    with pytest.raises(ValueError, match="sparse label 7 is out of range"):
        sparse(labels=native(backend, bad), logits=logits, ignore_index=-100)
    with pytest.raises(ValueError, match="sparse label -100 is out of range"):
        sparse(labels=native(backend, labels), logits=logits)
    kept = labels != -100
    for reduction in ("none", "mean", "sum"):
        got = sparse(labels=native(backend, labels), logits=logits, ignore_index=-100,
                     reduction=reduction)
        unused = sparse(labels=native(backend, labels[kept]),
                        logits=native(backend, np.tile(LOGITS, (rows, 1))[:rows][kept]),
                        ignore_index=5, reduction=reduction)
        plain = sparse(labels=native(backend, labels[kept]),
                       logits=native(backend, np.tile(LOGITS, (rows, 1))[:rows][kept]),
                       reduction=reduction)
        np.testing.assert_array_equal(backend.to_numpy(unused), backend.to_numpy(plain))
        if reduction == "none":
            got = backend.to_numpy(got)[kept]
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(plain), rtol=1e-6)


def test_an_option_of_another_framework_names_it(backend) -> None:  # type: ignore[no-untyped-def]
    others = [b for b in xent.backends.available() if b not in ("numpy", backend.name)]
    if not others:
        pytest.skip("needs a second framework installed")
    other = xent.backends.get(others[0])
    weights = other.asarray(np.ones(2, np.float32), dtype="float32")
    with pytest.raises(TypeError, match=f"weights: a {other.name} tensor cannot be combined "
                                        f"with {backend.name} logits"):
        dense(labels=LABELS, logits=native(backend, LOGITS), weights=weights)


def test_unknown_backend_name() -> None:
    with pytest.raises(ValueError, match=r"backend: unknown backend 'nope'; available: numpy"):
        xent.softmax(LOGITS, backend="nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        with xent.use_backend("nope"):
            pass


def test_unsupported_logits_type() -> None:
    with pytest.raises(TypeError, match="logits: unsupported type builtins.str"):
        xent.softmax("abc")
    with pytest.raises(TypeError, match="labels: unsupported type builtins.dict"):
        xent.softmax_cross_entropy_with_logits(labels={}, logits=LOGITS)


def test_inputs_are_never_modified(backend) -> None:  # type: ignore[no-untyped-def]
    logits = np.array([[0.5, -np.inf, 2.0], [np.nan, 1.0, 0.0]], np.float32)
    labels = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]], np.float32)
    x, y = native(backend, logits), native(backend, labels)
    for f in (lambda: xent.softmax(x), lambda: xent.log_softmax(x, 0),
              lambda: dense(labels=y, logits=x), lambda: sparse(labels=[2, 1], logits=x)):
        f()
    np.testing.assert_array_equal(backend.to_numpy(x), logits)
    np.testing.assert_array_equal(backend.to_numpy(y), labels)
