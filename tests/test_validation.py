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
         ValueError, "reduction: expected 'none', 'sum' or 'mean', got 'avg'"),
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
