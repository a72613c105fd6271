"""xent's NumPy backend against the naive NumPy composition and torch, in one run.

    python benchmarks/numpy_backend.py [--repeats N] [--quick]

Prints, per shape (float32, dense labels), the best-of-N time of
  naive:  max, subtract, exp, sum, log, multiply, sum (what people write by hand)
  xent:   xent.softmax_cross_entropy_with_logits (tiled, threaded NumPy backend)
  torch:  torch.nn.functional.cross_entropy(logits, probs, reduction="none") on CPU
and the ratios, plus the peak extra memory (tracemalloc) of naive and xent. Then the cost
of dispatch + validation: the public function against the backend method on a 2x3 input.
Ratios from one run on the same machine are what to compare; absolute times are noisy.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

import xent
from xent.backends._numpy_tiles import release_scratch

SHAPES = [(4096, 1000), (256, 32000), (64, 128256), (2, 3)]


def naive(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return (labels * (lse - z)).sum(axis=-1)


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best of ``repeats`` per function, the functions interleaved so that they all see the
    same machine load; each timing averages enough calls to last ~1 ms."""
    inner = {}
    for name, fn in fns.items():
        fn()
        start = time.perf_counter()
        fn()
        inner[name] = max(1, int(1e-3 / max(time.perf_counter() - start, 1e-7)))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / inner[name])
    return best


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated during ``fn()``, counting xent's reusable scratch buffers (they
    are dropped first, so the call allocates them again)."""
    release_scratch()
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def torch_call(labels: np.ndarray, logits: np.ndarray) -> Callable[[], object] | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    tl, tx = torch.from_numpy(labels), torch.from_numpy(logits)
    return lambda: F.cross_entropy(tx, tl, reduction="none")


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:7.2f} {unit}"
    return f"{seconds * 1e9:7.0f} ns"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    rng = np.random.default_rng(0)

    print(f"float32, dense labels; best of {repeats}; threads: "
          f"{_threads()}")
    header = (f"{'shape':>12} | {'naive':>10} | {'xent':>10} | {'torch':>10} | "
              f"{'naive/xent':>10} | {'torch/xent':>10} | {'naive MiB':>9} | {'xent MiB':>8}")
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        logits = (rng.standard_normal(shape) * 4).astype(np.float32)
        labels = rng.random(shape, dtype=np.float32)
        labels /= labels.sum(axis=-1, keepdims=True)

        def run_xent() -> object:
            return xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)

        def run_naive() -> object:
            return naive(labels, logits)

        np.testing.assert_allclose(run_xent(), run_naive(), rtol=1e-4)
        fns = {"naive": run_naive, "xent": run_xent}
        torch_fn = torch_call(labels, logits)
        if torch_fn:
            fns["torch"] = torch_fn
        times = best_times(fns, repeats if logits.size > 1000 else 200)  # tiny: noisy
        t_naive, t_xent = times["naive"], times["xent"]
        t_torch = times.get("torch", float("nan"))
        mem_naive = peak_extra_bytes(run_naive) / 2**20
        mem_xent = peak_extra_bytes(run_xent) / 2**20
        print(f"{'x'.join(map(str, shape)):>12} | {fmt_time(t_naive):>10} | "
              f"{fmt_time(t_xent):>10} | {fmt_time(t_torch):>10} | {t_naive / t_xent:10.2f} | "
              f"{t_torch / t_xent:10.2f} | {mem_naive:9.1f} | {mem_xent:8.2f}")

    overhead()


def overhead() -> None:
    """Public call minus direct backend call, 2x3 float32, dense and sparse."""
    backend = xent.backends.get("numpy")
    logits = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], np.float32)
    labels = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    index = np.array([1, 2])
    pairs = {
        "dense": (
            lambda: xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits),
            lambda: backend.softmax_cross_entropy_with_logits(labels, logits, 1),
        ),
        "sparse": (
            lambda: xent.sparse_softmax_cross_entropy_with_logits(labels=index, logits=logits),
            lambda: backend.sparse_softmax_cross_entropy_with_logits(index, logits, 1),
        ),
        "softmax": (lambda: xent.softmax(logits), lambda: backend.softmax(logits, 1)),
    }
    print("\ndispatch + validation at 2x3 float32 (best of 200 interleaved batches of 1000);"
          "\n'no-op' replaces the backend's kernels by `return None`: the pure cost of the API")
    for name, (public, direct) in pairs.items():
        t_public = t_direct = float("inf")
        for _ in range(200):  # interleaved, so both see the same machine load
            t_public = min(t_public, _per_call(public, 1000))
            t_direct = min(t_direct, _per_call(direct, 1000))
        print(f"  {name:8} public {fmt_time(t_public)}  backend {fmt_time(t_direct)}  "
              f"overhead {fmt_time(t_public - t_direct)}  no-op {fmt_time(_noop_overhead(name))}")


def _noop_overhead(name: str) -> float:
    """The public call with the backend's kernel replaced by ``return None``."""
    backend = xent.backends.get("numpy")
    logits = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], np.float32)
    labels = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    method = {"dense": "softmax_cross_entropy_with_logits", "softmax": "softmax",
              "sparse": "sparse_softmax_cross_entropy_with_logits"}[name]
    public = {
        "dense": lambda: xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits),
        "sparse": lambda: xent.sparse_softmax_cross_entropy_with_logits(labels=[1, 2],
                                                                        logits=logits),
        "softmax": lambda: xent.softmax(logits),
    }[name]
    if name == "sparse":
        index = np.array([1, 2])
        public = lambda: xent.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
            labels=index, logits=logits)
    setattr(backend, method, lambda *args: None)
    try:
        t_public = min(_per_call(public, 1000) for _ in range(200))
        t_empty = min(_per_call(lambda: None, 1000) for _ in range(200))
    finally:
        delattr(backend, method)
    return t_public - t_empty


def _per_call(fn: Callable[[], object], number: int = 20000) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _threads() -> int:
    from xent.backends._numpy_tiles import num_threads

    return num_threads()


if __name__ == "__main__":
    main()
