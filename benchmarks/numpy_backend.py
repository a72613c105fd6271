"""xent's NumPy backend against the naive NumPy composition and torch, in one run.

    python benchmarks/numpy_backend.py [--budget SECONDS] [--quick]

Per shape (float32, dense labels), the minimum time over interleaved calls (``timing.py``) of
  naive:   max, subtract, exp, sum, log, multiply, sum (what people write by hand)
  xent:    xent.softmax_cross_entropy_with_logits (tiled, threaded NumPy backend)
  xent 1t: the same with ``XENT_NUM_THREADS=1``
  torch:   torch.nn.functional.cross_entropy(logits, probs, reduction="none") on CPU
and the ratios the targets are stated in: xent / torch <= 1.0 at the large shapes, naive /
xent 1t >= 1.8 (the single-thread kernel on its own), plus the peak extra memory
(tracemalloc) of naive and xent. Then the cost of dispatch + validation on a 2x3 input: the
public function against the backend method, and with the backend's kernel replaced by
``return None`` (target: sparse <= 1.5 us). Ratios of one run are what to compare; absolute
times are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from timing import interleaved_min  # noqa: E402

import xent  # noqa: E402
from xent.backends._numpy_tiles import num_threads, release_scratch  # noqa: E402

SHAPES = [(4096, 1000), (256, 32000), (64, 128256), (2, 3)]
TORCH_TARGET, NAIVE_TARGET, SPARSE_OVERHEAD_TARGET = 1.0, 1.8, 1.5e-6


def naive(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return (labels * (lse - z)).sum(axis=-1)


def one_thread(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with ``XENT_NUM_THREADS=1`` (read at every call)."""
    def run() -> object:
        previous = os.environ.get("XENT_NUM_THREADS")
        os.environ["XENT_NUM_THREADS"] = "1"
        try:
            return fn()
        finally:
            if previous is None:
                del os.environ["XENT_NUM_THREADS"]
            else:
                os.environ["XENT_NUM_THREADS"] = previous
    return run


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


def verdict(ok: bool) -> str:
    return "ok" if ok else "SLOW"


def speed(budget: float) -> None:
    rng = np.random.default_rng(0)
    print(f"float32, dense labels; minimum over interleaved calls; threads: {num_threads()}")
    header = (f"{'shape':>10} | {'naive':>10} | {'xent':>10} | {'xent 1t':>10} | {'torch':>10} | "
              f"{'xent/torch':>10} | {'naive/xent 1t':>13} | {'naive MiB':>9} | {'xent MiB':>8}")
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
        fns = [run_naive, run_xent, one_thread(run_xent)]
        torch_fn = torch_call(labels, logits)
        if torch_fn:
            fns.append(torch_fn)
        large = logits.size > 1000
        if large:
            t = interleaved_min(fns, budget)
        else:  # microseconds: time batches of calls, so each timing spans ~1 ms
            t = [v / 100 for v in interleaved_min([_batch(fn, 100) for fn in fns], budget / 4)]
        t_naive, t_xent, t_one = t[:3]
        t_torch = t[3] if torch_fn else float("nan")
        mem_naive = peak_extra_bytes(run_naive) / 2**20
        mem_xent = peak_extra_bytes(run_xent) / 2**20
        targets = (f"  {verdict(t_xent / t_torch <= TORCH_TARGET)} "
                   f"{verdict(t_naive / t_one >= NAIVE_TARGET)}" if large else "")
        print(f"{'x'.join(map(str, shape)):>10} | {fmt_time(t_naive):>10} | "
              f"{fmt_time(t_xent):>10} | {fmt_time(t_one):>10} | {fmt_time(t_torch):>10} | "
              f"{t_xent / t_torch:10.2f} | {t_naive / t_one:13.2f} | {mem_naive:9.1f} | "
              f"{mem_xent:8.2f}{targets}")
    print(f"targets at the large shapes: xent/torch <= {TORCH_TARGET}, naive/xent 1t >= "
          f"{NAIVE_TARGET}")


def overhead() -> None:
    """Public call minus direct backend call, 2x3 float32, dense, sparse and softmax; and
    the public call with the backend's kernel replaced by a no-op (the pure API cost)."""
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
          "\n'no-op' replaces the backend's kernels by `return None`: the pure cost of the API"
          f" (target: sparse <= {SPARSE_OVERHEAD_TARGET * 1e6:.1f} us)")
    for name, (public, direct) in pairs.items():
        t_public = t_direct = float("inf")
        for _ in range(200):  # interleaved, so both see the same machine load
            t_public = min(t_public, _per_call(public, 1000))
            t_direct = min(t_direct, _per_call(direct, 1000))
        noop = _noop_overhead(name)
        target = f"  {verdict(noop <= SPARSE_OVERHEAD_TARGET)}" if name == "sparse" else ""
        print(f"  {name:8} public {fmt_time(t_public)}  backend {fmt_time(t_direct)}  "
              f"overhead {fmt_time(t_public - t_direct)}  no-op {fmt_time(noop)}{target}")


def _noop_overhead(name: str) -> float:
    """The public call with the backend's kernel replaced by ``return None``."""
    backend = xent.backends.get("numpy")
    logits = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], np.float32)
    labels = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    index = np.array([1, 2])
    method = {"dense": "softmax_cross_entropy_with_logits", "softmax": "softmax",
              "sparse": "sparse_softmax_cross_entropy_with_logits"}[name]
    public = {
        "dense": lambda: xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits),
        "sparse": lambda: xent.sparse_softmax_cross_entropy_with_logits(labels=index,
                                                                        logits=logits),
        "softmax": lambda: xent.softmax(logits),
    }[name]
    setattr(backend, method, lambda *args: None)
    try:
        t_public = min(_per_call(public, 1000) for _ in range(200))
        t_empty = min(_per_call(lambda: None, 1000) for _ in range(200))
    finally:
        delattr(backend, method)
    return t_public - t_empty


def _batch(fn: Callable[[], object], number: int) -> Callable[[], object]:
    def run() -> object:
        for _ in range(number):
            fn()
        return None
    return run


def _per_call(fn: Callable[[], object], number: int = 20000) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds of interleaved timing per shape (default 3)")
    parser.add_argument("--quick", action="store_true", help="a 1 s budget")
    args = parser.parse_args()
    speed(1.0 if args.quick else args.budget)
    overhead()


if __name__ == "__main__":
    main()
