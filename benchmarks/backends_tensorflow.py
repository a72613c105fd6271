"""xent vs TensorFlow's own cross-entropy ops, on the same tensors.

Dense: ``xent.softmax_cross_entropy_with_logits`` vs ``tf.nn.softmax_cross_entropy_with_logits``;
sparse: ``xent.sparse_softmax_cross_entropy_with_logits`` vs
``tf.nn.sparse_softmax_cross_entropy_with_logits``. Forward, and forward + backward (the
gradient of the summed loss with respect to the logits through ``tf.GradientTape``), in
eager mode and inside ``tf.function`` (and, with ``--modes xla``, inside
``tf.function(jit_compile=True)``). float32, one-hot labels (the same for both ops).

Each time is the minimum over interleaved repetitions (xent, native, xent, native, ...),
the estimate least disturbed by other work on the machine. ratio = xent / native in wall-clock
time (below 1: xent is faster); cpu = the same ratio in CPU time summed over the process's
threads, the steadier number when other processes compete for the cores.

    python benchmarks/backends_tensorflow.py [--quick] [--budget SECONDS]
                                             [--modes eager,function,xla]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import xent  # noqa: E402

SHAPES = ((4096, 1000), (256, 32000), (64, 128256), (2, 3))


def _ops(sparse: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
    if sparse:
        return (
            lambda y, x: xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
            lambda y, x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
        )
    return (
        lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x),
        lambda y, x: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x),
    )


def _with_backward(loss: Callable[..., Any]) -> Callable[..., Any]:
    def forward_backward(y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(loss(y, x))
        return tape.gradient(total, x)

    return forward_backward


def _timed(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Wall and CPU (all threads of the process) seconds per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = fn()
    np.asarray(out)  # wait for the result (a no-op on CPU, where eager ops are synchronous)
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def compare(a: Callable[[], Any], b: Callable[[], Any], budget: float) -> list[tuple[float, float]]:
    """Minimum (wall, cpu) seconds per call of ``a`` and ``b``, timed alternately."""
    a(), b()  # warm up (traces tf.function)
    once = _timed(a, 1)[0] + _timed(b, 1)[0]
    calls = max(1, int(0.002 / once))  # batch tiny calls so the timer does not dominate
    rounds = int(min(max(budget / (once * calls), 5), 300))
    best = [(float("inf"), float("inf"))] * 2
    for _ in range(rounds):
        for i, fn in enumerate((a, b)):
            wall, cpu = _timed(fn, calls)
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def _inputs(rows: int, classes: int, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, classes), dtype=np.float32) * 3
    index = rng.integers(0, classes, rows)
    one_hot = (np.arange(classes) == index[:, None]).astype(np.float32)
    return tf.constant(one_hot), tf.constant(index), tf.constant(logits)


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.3f}" if seconds >= 1e-3 else f"{seconds * 1e3:10.4f}"


def main(argv: Sequence[str] = ()) -> None:
    """Print the table (``argv``: this script's options, not ``sys.argv``, so that another
    script can call ``main()`` or ``main(["--quick"])``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing budget")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timing per table cell (default 1.5, --quick 0.4)")
    parser.add_argument("--modes", default="eager,function",
                        help="comma-separated: eager, function, xla (default eager,function)")
    args = parser.parse_args(list(argv))
    budget = args.budget if args.budget is not None else 0.4 if args.quick else 1.5
    modes = [m for m in args.modes.split(",") if m]

    print(f"TensorFlow {tf.__version__}, float32, {os.cpu_count()} CPU core(s); ms per call (wall "
          "clock), min of interleaved repetitions;\nratio = xent / native (below 1: xent is "
          "faster); cpu = that ratio in CPU time of all threads (steadier on a busy machine)")
    columns = f"{'xent':>10} {'native':>10} {'ratio':>5} {'cpu':>5}"
    header = f"{'shape':>12} {'mode':>8} {'pass':>7} | {columns} | {columns}"
    print(f"{'':>29} | {'dense':^33} | {'sparse':^33}")
    print(header)
    print("-" * len(header))
    for rows, classes in SHAPES:
        dense_labels, sparse_labels, logits = _inputs(rows, classes)
        for mode in modes:
            for pass_ in ("fwd", "fwd+bwd"):
                cells = []
                for sparse, labels in ((False, dense_labels), (True, sparse_labels)):
                    ours, native = _ops(sparse)
                    if pass_ == "fwd+bwd":
                        ours, native = _with_backward(ours), _with_backward(native)
                    if mode != "eager":
                        ours = tf.function(ours, jit_compile=mode == "xla")
                        native = tf.function(native, jit_compile=mode == "xla")
                    (wall, cpu), (native_wall, native_cpu) = compare(
                        lambda f=ours, y=labels: f(y, logits),
                        lambda f=native, y=labels: f(y, logits),
                        budget,
                    )
                    cells.append(f"{_fmt_ms(wall)} {_fmt_ms(native_wall)} "
                                 f"{wall / native_wall:5.2f} {cpu / native_cpu:5.2f}")
                shape = f"{rows}x{classes}"
                print(f"{shape:>12} {mode:>8} {pass_:>7} | {cells[0]} | {cells[1]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
