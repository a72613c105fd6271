"""Interleaved timing for the benchmark scripts: ratios of one run on a noisy machine."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_min(fns: list[Callable[[], object]], budget: float,
                    clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Minimum seconds per call of each of ``fns``, run alternately for about ``budget`` s
    (so a busy machine slows all of them alike)."""
    for fn in fns:
        fn()  # warm up (allocators, kernels, compilation)
    start = time.perf_counter()
    for fn in fns:
        fn()
    per_round = max(time.perf_counter() - start, 1e-7)
    rounds = max(5, min(2000, int(budget / per_round)))
    inner = max(1, int(1e-3 / per_round))  # batch calls that take microseconds
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = clock()
            for _ in range(inner):
                fn()
            best[i] = min(best[i], (clock() - t0) / inner)
    return best


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"
