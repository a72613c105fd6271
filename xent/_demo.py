"""``xent demo``: the seed's worked example on every installed backend and mode.

Prints the softmax table, the per-instance losses and their mean from each backend in
each execution mode (NumPy, torch, TF eager / tf.function / TF1 graph + Session, JAX eager
and jit), their largest disagreement, and a masked row where the frameworks' own calls
give NaN and xent does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import xent
from xent.backends import Backend

# The seed: y_hat (logits) and y_true (one-hot labels) of two training instances.
LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
MASKED_LOGITS = np.array([[0.5, 1.5, -np.inf]])
MASKED_LABELS = np.array([[0.0, 1.0, 0.0]])


def _softmax(x: object) -> object:
    return xent.softmax(x)


def _losses(y: object, x: object) -> object:
    return xent.softmax_cross_entropy_with_logits(labels=y, logits=x)


def _mean(y: object, x: object) -> object:
    return xent.softmax_cross_entropy_with_logits(labels=y, logits=x, reduction="mean")


def _native_numpy(y: np.ndarray, x: np.ndarray) -> float:
    m = x.max(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        log_softmax = x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
        return float(-(y * log_softmax).sum())


def _native_torch(y: np.ndarray, x: np.ndarray) -> float:
    import torch

    return float(torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y)))


def _native_tensorflow(y: np.ndarray, x: np.ndarray) -> float:
    import tensorflow as tf

    return float(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)[0])


def _native_jax(y: np.ndarray, x: np.ndarray) -> float:
    import jax

    return float(-(y * jax.nn.log_softmax(x)).sum())


#: backend name -> (how the native call is spelled, the call on NumPy input)
NATIVE: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "numpy": ("-(y * log_softmax(x)).sum()", _native_numpy),
    "torch": ("F.cross_entropy(x, y)", _native_torch),
    "tensorflow": ("tf.nn.softmax_cross_entropy_with_logits", _native_tensorflow),
    "jax": ("-(y * jax.nn.log_softmax(x)).sum()", _native_jax),
}


def _dtype(backend: Backend) -> str:
    return "float64" if "float64" in backend.dtypes else "float32"


def main(args: argparse.Namespace) -> int:
    names = args.backend or xent.backends.available()
    chosen = [xent.backends.get(name) for name in names]
    print("xent demo: the worked example of the seed Q&A (y_hat = logits, y_true = one-hot)\n")
    print(f"logits {LOGITS.tolist()}   labels {LABELS.tolist()}\n")

    reference = chosen[0]
    softmax = reference.run(reference.modes[0], _softmax, LOGITS.astype(_dtype(reference)))
    print(f"softmax ({reference.name}, {_dtype(reference)})")
    print(" " * 22 + "Pr(Class 1)  Pr(Class 2)  Pr(Class 3)")
    for i, row in enumerate(np.asarray(softmax, np.float64)):
        print(f"Training instance {i + 1} | " + " | ".join(f"{p:<10.8g}" for p in row))
    print()

    print(f"{'backend':<11} {'mode':<9} {'dtype':<8} {'loss[0]':>12} {'loss[1]':>12} "
          f"{'mean':>20}  max |diff| vs {reference.name}")
    rows = []
    for backend in chosen:
        dtype = _dtype(backend)
        y, x = LABELS.astype(dtype), LOGITS.astype(dtype)
        for mode in backend.modes:
            losses = np.asarray(backend.run(mode, _losses, y, x), np.float64)
            mean = float(np.asarray(backend.run(mode, _mean, y, x), np.float64))
            rows.append((backend.name, mode, dtype, losses, mean))
    base = rows[0][3]
    worst = (0.0, "")
    for name, mode, dtype, losses, mean in rows:
        diff = float(np.abs(losses - base).max())
        if diff > worst[0]:
            worst = (diff, f"{name} {mode} ({dtype})")
        print(f"{name:<11} {mode:<9} {dtype:<8} {losses[0]:12.8g} {losses[1]:12.9g} "
              f"{mean:20.17g}  {diff:.2g}")
    print(f"\nlargest disagreement: {worst[0]:.2g}" + (f" ({worst[1]})" if worst[1] else "")
          + "\n")

    print(f"masked class: logits {MASKED_LOGITS.tolist()[0]}, labels "
          f"{MASKED_LABELS.tolist()[0]}  (exact loss 0.3132617)")
    print(f"{'backend':<11} {'native call':<42} {'native':>9} {'xent':>11}")
    for backend in chosen:
        spelled, native = NATIVE.get(backend.name, ("", None))
        native_value = native(MASKED_LABELS, MASKED_LOGITS) if native else float("nan")
        ours = float(np.asarray(backend.run(
            backend.modes[0], _losses, MASKED_LABELS.astype(_dtype(backend)),
            MASKED_LOGITS.astype(_dtype(backend))))[0])
        print(f"{backend.name:<11} {spelled or '(no native call known)':<42} "
              f"{native_value:>9.7g} {ours:>11.7f}")
    return 0
