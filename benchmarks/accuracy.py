"""Relative error of confident losses: xent's backends and the native calls, against mpmath.

    python benchmarks/accuracy.py

For float32 logits where the right class leads by ``gap`` (loss ~ (C-1) exp(-gap)), prints
the worst relative error, in units of float32 eps, of the sparse loss over 16 rows, for
xent on each installed backend and for each framework's own call. ``log(sum(exp(x - m)))``
rounds ``1 + tiny`` to 1: a relative error of ~1/eps = 8.4e6 eps means the loss came out 0.
"""

from __future__ import annotations

import importlib.util
import os

import mpmath
import numpy as np

import xent

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
mpmath.mp.dps = 50
EPS = float(np.finfo(np.float32).eps)


def exact_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = []
    for row, label in zip(logits.astype(np.float64), labels):
        xs = [mpmath.mpf(float(v)) for v in row]
        out.append(mpmath.log(mpmath.fsum(mpmath.exp(v - xs[label]) for v in xs)))
    return np.array(out, dtype=object)


def natives() -> dict[str, object]:
    calls: dict[str, object] = {}
    if importlib.util.find_spec("torch"):
        import torch

        calls["torch F.cross_entropy"] = lambda x, y: torch.nn.functional.cross_entropy(
            torch.from_numpy(x), torch.from_numpy(y), reduction="none").numpy()
    if importlib.util.find_spec("tensorflow"):
        import tensorflow as tf

        calls["tf sparse_softmax_cross_entropy"] = (
            lambda x, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x).numpy())
    if importlib.util.find_spec("jax"):
        import jax
        import jax.numpy as jnp

        calls["jax logsumexp - x[label] (optax)"] = lambda x, y: np.asarray(
            jax.nn.logsumexp(x, axis=-1) - jnp.take_along_axis(x, y[:, None], -1)[:, 0])
    return calls


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for classes, gap in [(3, 20.0), (1000, 20.0), (1000, 30.0)]:
        logits = rng.standard_normal((16, classes)).astype(np.float32)
        labels = rng.integers(0, classes, 16)
        logits[np.arange(16), labels] = logits.max(axis=1) + gap
        exact = exact_losses(logits, labels)

        def rel(values: np.ndarray, exact: np.ndarray = exact) -> float:
            return max(float(abs((mpmath.mpf(float(v)) - e) / e)) for v, e in
                       zip(np.asarray(values, np.float64), exact)) / EPS

        results = {}
        for name in xent.backends.available():
            backend = xent.backends.get(name)
            results[f"xent ({name})"] = rel(backend.run(
                backend.modes[0],
                lambda y, x: xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
                labels, logits))
        for name, call in natives().items():
            results[name] = rel(call(logits, labels))  # type: ignore[operator]
        rows.append((classes, gap, float(np.mean([float(e) for e in exact])), results))

    names = list(rows[0][3])
    print("float32, worst relative error over 16 rows, in eps (1.19e-7)")
    print(f"{'':34}" + "".join(f"{f'C={c}, gap {g:g}':>18}" for c, g, _, _ in rows))
    print(f"{'exact loss (mean)':34}" + "".join(f"{m:18.3g}" for _, _, m, _ in rows))
    for name in names:
        print(f"{name:34}" + "".join(f"{r[name]:18.3g}" for _, _, _, r in rows))


if __name__ == "__main__":
    main()
