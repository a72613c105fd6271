"""The seed's worked example: its numbers are the first acceptance test, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xent

LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
SOFTMAX = np.array([[0.227863, 0.61939586, 0.15274114], [0.49674623, 0.20196195, 0.30129182]])
LOSSES = np.array([0.4790107, 1.19967598])
MEAN = 0.83934333897877944  # the seed's total_loss_1 (total_loss_2 printed ...922)


def test_seed_numbers_numpy_float64() -> None:
    np.testing.assert_allclose(xent.softmax(LOGITS), SOFTMAX, rtol=0, atol=5e-9)
    loss = xent.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS)
    assert loss.dtype == np.float64
    np.testing.assert_allclose(loss, LOSSES, rtol=0, atol=5e-9)
    mean = xent.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS, reduction="mean")
    # The exact mean is 0.8393433389787792767...; the seed's two values are 1 ulp either side.
    assert abs(float(mean) - MEAN) <= 2 * np.spacing(MEAN)
    sparse = xent.sparse_softmax_cross_entropy_with_logits(labels=[1, 2], logits=LOGITS)
    np.testing.assert_array_equal(sparse, loss)


def test_seed_numbers_every_backend(target) -> None:  # type: ignore[no-untyped-def]
    dtype = "float64" if target.supports("float64") else "float32"
    tol = 5e-9 if dtype == "float64" else 3e-7
    logits, labels = LOGITS.astype(dtype), LABELS.astype(dtype)
    softmax = target.run(lambda x: xent.softmax(x), logits)
    loss = target.run(
        lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x), labels, logits
    )
    mean = target.run(
        lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x, reduction="mean"),
        labels, logits,
    )
    np.testing.assert_allclose(softmax, SOFTMAX, rtol=0, atol=tol)
    np.testing.assert_allclose(loss, LOSSES, rtol=0, atol=tol)
    assert mean == pytest.approx(MEAN, abs=tol)
