"""What the framework twins cost: on native tensors against the native function, and over
the core call they make.

    python benchmarks/twins.py [--quick] [--only torch,optax,keras,tf1] [--torch-threads N]

1. overhead at 2x3: each twin against the core call it makes (the same meaning through
   ``xent.*`` directly), in microseconds, and again with the core's kernels stubbed (the
   Python work alone: steady where a kernel call is slow and noisy, as TF eager's).
   Target: <= 2 us over the core call.
2. native: each twin on its framework's tensors against the native function, forward, at
   4096x1000, 256x32000 and 64x128256 (float32). Target: <= 1.1x.

JAX calls are jitted; torch, TF and Keras run eagerly. Timing: the minimum over interleaved
repeats (``timing.py``): ratios of one run on a noisy machine; run it twice. The overheads
are measured in this thread's CPU time (``time.thread_time``: a busy machine's preemption
does not count); the large shapes in wall time and, as ``cpu``, in the CPU time of all
threads (``time.process_time``: steadier where other processes compete for the cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from timing import fmt_time, interleaved_min  # noqa: E402

import xent  # noqa: E402
from xent import _api  # noqa: E402

LARGE = ((4096, 1000), (256, 32000), (64, 128256))
TORCH_THREADS: list[int] = []  # --torch-threads: torch.set_num_threads
Case = tuple[str, Callable[[], Any], Callable[[], Any]]


def _arrays(n: int, c: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    index = rng.integers(0, c, n)
    x = rng.normal(size=(n, c)).astype(np.float32)
    return dict(x=x, index=index, onehot=np.eye(c, dtype=np.float32)[index] if n * c <= 64
                else None)


def torch_cases(n: int, c: int, overhead: bool) -> list[Case]:
    import torch
    import torch.nn.functional as F

    from xent.compat.torch.nn import functional as twin

    if TORCH_THREADS:  # on a busy machine torch's second thread waits for a core
        torch.set_num_threads(TORCH_THREADS[0])
    a = _arrays(n, c)
    x, t = torch.tensor(a["x"]), torch.tensor(a["index"])
    core = lambda: xent.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
        labels=t, logits=x, axis=1, reduction="mean", ignore_index=-100)  # torch's default
    return [("torch F.cross_entropy(x, t)", lambda: twin.cross_entropy(x, t),
             core if overhead else lambda: F.cross_entropy(x, t))]


def optax_cases(n: int, c: int, overhead: bool) -> list[Case]:
    import jax
    import jax.numpy as jnp

    from xent.compat import optax as twin
    from xent.compat.jax import nn as twin_nn

    a = _arrays(n, c)
    x, t = jnp.asarray(a["x"]), jnp.asarray(a["index"])
    if overhead:  # eager: the Python work of the twin around the core call
        return [("optax integer_labels (eager)",
                 lambda: twin.softmax_cross_entropy_with_integer_labels(x, t),
                 lambda: xent.sparse_softmax_cross_entropy_with_logits(labels=t, logits=x)),
                ("jax.nn log_softmax (eager)", lambda: twin_nn.log_softmax(x),
                 lambda: xent.log_softmax(x))]
    import optax

    mine = jax.jit(twin.softmax_cross_entropy_with_integer_labels)
    native = jax.jit(optax.softmax_cross_entropy_with_integer_labels)
    mine_ls, native_ls = jax.jit(twin_nn.log_softmax), jax.jit(jax.nn.log_softmax)
    return [("optax integer_labels (jit)", lambda: mine(x, t).block_until_ready(),
             lambda: native(x, t).block_until_ready()),
            ("jax.nn log_softmax (jit)", lambda: mine_ls(x).block_until_ready(),
             lambda: native_ls(x).block_until_ready())]


def keras_cases(n: int, c: int, overhead: bool) -> list[Case]:
    import tensorflow as tf

    from xent.compat.keras import losses as twin

    a = _arrays(n, c)
    x, t = tf.constant(a["x"]), tf.constant(a["index"])
    mine = twin.SparseCategoricalCrossentropy(from_logits=True)
    if overhead:
        return [("keras SparseCCE(from_logits) (eager)", lambda: mine(t, x),
                 lambda: xent.sparse_softmax_cross_entropy_with_logits(
                     labels=t, logits=x, reduction="mean"))]
    import keras

    native = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return [("keras SparseCCE(from_logits) (eager)", lambda: mine(t, x), lambda: native(t, x))]


def tf1_cases(n: int, c: int, overhead: bool) -> list[Case]:
    import tensorflow as tf

    from xent.compat.v1 import losses as twin

    a = _arrays(n, c)
    x, t = tf.constant(a["x"]), tf.constant(a["index"])
    core = lambda: xent.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
        labels=t, logits=x, reduction="mean")
    return [("tf1 losses.sparse_softmax_cross_entropy (eager)",
             lambda: twin.sparse_softmax_cross_entropy(t, x),
             core if overhead else lambda: tf.compat.v1.losses.sparse_softmax_cross_entropy(
                 t, x))]


FRAMEWORKS = {"torch": torch_cases, "optax": optax_cases, "keras": keras_cases,
              "tf1": tf1_cases}


@contextlib.contextmanager
def _kernels_stubbed(result: Any) -> Iterator[None]:
    """The core's loss and log_softmax kernels replaced by one returning ``result``: the
    twin and the core call then differ by their Python work only. On TF eager a 2x3 core
    call takes ~100-200 us on these machines, so the difference of two such calls is
    noise-bound at a few microseconds; with the kernels stubbed it is steady."""
    stub = lambda *args, **kwargs: result  # noqa: E731
    saved = _api._dense, _api._sparse
    loaded = [xent.backends.get(name) for name in ("torch", "tensorflow", "jax")
              if name in sys.modules]  # the backends' modules are named as they are
    _api._dense = _api._sparse = stub  # type: ignore[assignment]
    for be in loaded:
        be.log_softmax = stub  # type: ignore[method-assign]
    try:
        yield
    finally:
        _api._dense, _api._sparse = saved
        for be in loaded:
            del be.log_softmax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing budget")
    parser.add_argument("--only", default=",".join(FRAMEWORKS))
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch.set_num_threads(N) (default: torch's own choice)")
    args = parser.parse_args()
    if args.torch_threads:
        TORCH_THREADS.append(args.torch_threads)
    budget = 0.5 if args.quick else 2.0
    chosen = [FRAMEWORKS[name] for name in args.only.split(",")]
    warnings.simplefilter("ignore")
    print("1. twin overhead over the core call it makes, 2x3 float32 (target <= 2 us), and "
          "the same with the kernels stubbed")
    print(f"{'twin':>48}  {'core':>12} {'twin':>12} {'overhead':>10}  {'stubbed':>9}")
    for make in chosen:
        for name, twin_call, core_call in make(2, 3, True):
            core, twin = interleaved_min([core_call, twin_call], budget, time.thread_time)
            with _kernels_stubbed(core_call()):
                rounds = [interleaved_min([core_call, twin_call], budget / 4, time.thread_time)
                          for _ in range(4)]
            stubbed = min(r[1] for r in rounds) - min(r[0] for r in rounds)
            ok = "ok" if min(twin - core, stubbed) <= 2e-6 else "over"
            print(f"{name:>48}  {fmt_time(core)} {fmt_time(twin)} "
                  f"{(twin - core) * 1e6:8.2f} us {stubbed * 1e6:6.2f} us {ok}")
    print()
    print("2. twin / native function on native tensors, forward, float32 (target <= 1.1x)")
    print(f"{'twin':>48} {'shape':>10} {'native':>12} {'twin':>12} {'ratio':>6} {'cpu':>6}")
    for make in chosen:
        for n, c in LARGE:
            for name, twin_call, native_call in make(n, c, False):
                native, twin = interleaved_min([native_call, twin_call], budget)
                cpu_native, cpu_twin = interleaved_min([native_call, twin_call], budget,
                                                       time.process_time)
                ratio, cpu = twin / native, cpu_twin / cpu_native
                ok = "ok" if min(ratio, cpu) <= 1.1 else "over"
                print(f"{name:>48} {f'{n}x{c}':>10} {fmt_time(native)} {fmt_time(twin)} "
                      f"{ratio:5.2f}x {cpu:5.2f}x {ok}")


if __name__ == "__main__":
    main()
