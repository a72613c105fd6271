"""xent on JAX against the optax-style formulas, under ``jax.jit``.

The optax-style references (optax itself is not a dependency):

    dense:  -(labels * jax.nn.log_softmax(logits)).sum(-1)
    sparse: logsumexp(logits, -1) - take_along_axis(logits, labels[:, None], -1)[:, 0]

Forward and forward+backward (``jax.value_and_grad`` w.r.t. logits of the summed loss),
float32, minimum over repeats with ``block_until_ready``. The ratio is xent / reference
(below 1.0 is faster). Also: rows with 10% masked (-inf) classes, where xent runs its
masked-class fix and the optax-style formula returns NaN; and the eager (non-jit) per-call
cost at 2x3, against the optax-style formula run eagerly and against xent under jit (the
difference is xent's Python-side dispatch and validation). And other transforms of the
dense loss at 4096x1000: ``jax.jvp`` in the logits, ``grad`` in labels and logits, and
per-example gradients (``vmap(grad)`` over the rows).

Run: ``python benchmarks/backends_jax.py [--quick]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import xent

SHAPES = ((4096, 1000), (256, 32000), (64, 128256), (2, 3))


def optax_dense(labels: Any, logits: Any) -> Any:
    return -(labels * jax.nn.log_softmax(logits)).sum(-1)


def optax_sparse(labels: Any, logits: Any) -> Any:
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


def xent_dense(labels: Any, logits: Any) -> Any:
    return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def xent_sparse(labels: Any, logits: Any) -> Any:
    return xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def seconds(fns: list[Callable[[], Any]], budget: float) -> list[float]:
    """Minimum wall time of one call of each of ``fns``, measured in alternating rounds
    (so that load from other processes hits every contender alike) for ~``budget`` s."""
    once = []
    for fn in fns:
        jax.block_until_ready(fn())  # compile and warm up
        start = time.perf_counter()
        jax.block_until_ready(fn())
        once.append(max(time.perf_counter() - start, 1e-7))
    inner = [max(1, min(1000, int(0.002 / t))) for t in once]  # batch tiny calls
    rounds = max(5, min(100, int(budget / sum(t * n for t, n in zip(once, inner)))))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, (fn, n) in enumerate(zip(fns, inner)):
            start = time.perf_counter()
            for _ in range(n):
                out = fn()
            jax.block_until_ready(out)
            best[i] = min(best[i], (time.perf_counter() - start) / n)
    return best


def forward_backward(loss: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return jax.value_and_grad(lambda logits, labels: loss(labels, logits).sum())


Row = tuple[str, str, float, float]


def rows(budget: float) -> tuple[list[Row], list[Row]]:
    """The table (xent vs optax-style) and the eager overhead (xent eager vs xent jit)."""
    rng = np.random.default_rng(0)
    out: list[Row] = []
    overhead: list[Row] = []
    for n, c in SHAPES:
        logits = jnp.asarray(rng.standard_normal((n, c), dtype=np.float32) * 3)
        classes = rng.integers(0, c, n)
        sparse = jnp.asarray(classes.astype(np.int32))
        dense = jnp.asarray(_one_hot(classes, c))
        cases = [
            ("dense fwd", jax.jit(xent_dense), jax.jit(optax_dense), (dense, logits)),
            ("sparse fwd", jax.jit(xent_sparse), jax.jit(optax_sparse), (sparse, logits)),
            ("dense fwd+bwd", jax.jit(forward_backward(xent_dense)),
             jax.jit(forward_backward(optax_dense)), (logits, dense)),
            ("sparse fwd+bwd", jax.jit(forward_backward(xent_sparse)),
             jax.jit(forward_backward(optax_sparse)), (logits, sparse)),
        ]
        for name, ours, theirs, args in cases:
            t_ours, t_theirs = seconds([lambda f=ours, a=args: f(*a),
                                        lambda f=theirs, a=args: f(*a)], budget)
            out.append((f"jit {name}", f"{n}x{c}", t_ours, t_theirs))
    # masked classes take xent's fix branch (the optax-style formula gives NaN there)
    logits = rng.standard_normal((4096, 1000), dtype=np.float32) * 3
    classes = rng.integers(0, 1000, 4096)
    logits[rng.random(logits.shape) < 0.1] = -np.inf
    logits[np.arange(4096), classes] = 0.0
    masked = (jnp.asarray(_one_hot(classes, 1000)), jnp.asarray(logits))
    for name, loss, reference in (("fwd", xent_dense, optax_dense),
                                  ("fwd+bwd", forward_backward(xent_dense),
                                   forward_backward(optax_dense))):
        args = masked if name == "fwd" else masked[::-1]
        t_ours, t_theirs = seconds([lambda f=jax.jit(loss): f(*args),
                                    lambda f=jax.jit(reference): f(*args)], budget)
        out.append((f"jit dense {name} 10% -inf", "4096x1000", t_ours, t_theirs))
    out += _transform_rows(rng, budget)
    logits = jnp.asarray(rng.standard_normal((2, 3), dtype=np.float32))
    dense = jnp.asarray(np.eye(3, dtype=np.float32)[[1, 2]])
    sparse = jnp.asarray(np.array([1, 2], np.int32))
    eager = [
        ("eager dense fwd", xent_dense, optax_dense, dense),
        ("eager sparse fwd", xent_sparse, optax_sparse, sparse),
    ]
    for name, ours, theirs, labels in eager:
        t_ours, t_theirs, t_jit = seconds([
            lambda f=ours, y=labels: f(y, logits), lambda f=theirs, y=labels: f(y, logits),
            lambda f=jax.jit(ours), y=labels: f(y, logits)], budget)
        out.append((name, "2x3", t_ours, t_theirs))
        overhead.append((name, "2x3", t_ours, t_jit))
    return out, overhead


def _transform_rows(rng: np.random.Generator, budget: float) -> list[Row]:
    """Other transforms at 4096x1000: forward mode, the gradient in labels and logits, and
    per-example gradients (``vmap`` of ``grad`` over the rows)."""
    logits = jnp.asarray(rng.standard_normal((4096, 1000), dtype=np.float32) * 3)
    labels = jnp.asarray(_one_hot(rng.integers(0, 1000, 4096), 1000))
    direction = jnp.asarray(rng.standard_normal((4096, 1000), dtype=np.float32))

    def jvp(loss: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
        return lambda y, x, t: jax.jvp(lambda x: loss(y, x), (x,), (t,))

    def grad_both(loss: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        return jax.grad(lambda y, x: loss(y, x).sum(), argnums=(0, 1))

    def per_example(loss: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        return jax.vmap(jax.grad(lambda y, x: loss(y, x), argnums=1))

    cases = [("jvp", jvp, (labels, logits, direction)),
             ("grad labels+logits", grad_both, (labels, logits)),
             ("vmap(grad) per row", per_example, (labels, logits))]
    out: list[Row] = []
    for name, transform, args in cases:
        ours, theirs = jax.jit(transform(xent_dense)), jax.jit(transform(optax_dense))
        t_ours, t_theirs = seconds([lambda: ours(*args), lambda: theirs(*args)], budget)
        out.append((f"jit dense {name}", "4096x1000", t_ours, t_theirs))
    return out


def _one_hot(classes: np.ndarray, c: int) -> np.ndarray:
    y = np.zeros((classes.size, c), np.float32)
    y[np.arange(classes.size), classes] = 1.0
    return y


def _fmt(t: float) -> str:
    return f"{t * 1e3:10.3f} ms" if t >= 1e-3 else f"{t * 1e6:10.1f} us"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    budget = 0.2 if "--quick" in args else 2.0
    print(f"xent vs optax-style formulas, JAX {jax.__version__} on "
          f"{jax.default_backend()}, float32, min over repeats")
    print(f"{'case':<28}{'shape':>11}{'xent':>14}{'optax-style':>14}{'ratio':>8}")
    table, overhead = rows(budget)
    for name, shape, ours, theirs in table:
        print(f"{name:<28}{shape:>11}{_fmt(ours):>14}{_fmt(theirs):>14}{ours / theirs:>8.2f}")
    print("eager overhead (xent called eagerly vs the same xent call jitted):")
    for name, shape, eager, jitted in overhead:
        print(f"  {name:<26}{shape:>11}  eager {_fmt(eager).strip()}, jit {_fmt(jitted).strip()}"
              f", overhead {_fmt(eager - jitted).strip()}")


if __name__ == "__main__":
    main()
