"""What the loss options cost on each backend, as ratios of one run.

    python benchmarks/options.py [--quick] [--cpu] [--only numpy,torch,tensorflow,jax]
        [--tables defaults,options,torch,grad]

Per backend, float32, at 4096x1000, 256x32000, 64x128256 (and 2x3 for the defaults):

1. defaults: the public call with every option at its default, against the same call of the
   API before options existed (``xent/_api.py`` of commit BEFORE, loaded from git; skipped
   outside a git checkout). Targets: <= 1.10x at 2x3, <= 1.02x at the large shapes.
2. options: each option alone and all together, sparse and dense, against the same
   backend's call without options. Target <= 1.3x (``ignore_index`` alone <= 1.1x).
   ``where``: a random mask of the logits' shape (10% excluded); ``where[C]``: one mask of
   ``[C]`` for every row (a vocabulary's).
3. torch: xent with ``class_weights`` / ``ignore_index`` / ``label_smoothing`` against
   ``F.cross_entropy`` with the same options, forward and forward+backward. Target <= 1.1x.
4. torch, forward+backward (training): each option of table 2 (and all together) against
   the same call without options, both with a gradient w.r.t. the logits. Target <= 1.3x.

JAX calls are jitted (the options as arguments); TF runs eagerly. Timing: the minimum over
interleaved repeats (``timing.py``); ``--cpu`` times tables 1 and 2 in process CPU time, which
other jobs on a shared machine do not inflate (it adds up the threads of a call).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from timing import fmt_time, interleaved_min  # noqa: E402

import xent  # noqa: E402

#: the clock of the defaults and options tables: wall time, or process CPU time (--cpu),
#: which a shared machine's other jobs do not inflate (it sums the threads of one call)
CLOCK = [time.perf_counter]
BEFORE = "5a62c58"  # the last commit of xent/_api.py without options
LARGE = ((4096, 1000), (256, 32000), (64, 128256))
IGNORE = -100


def _inputs(n: int, c: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    index = rng.integers(0, c, n)
    probs = rng.random((n, c), np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    ignored = index.copy()
    ignored[rng.random(n) < 0.1] = IGNORE  # 10% padding
    return dict(x=rng.normal(size=(n, c)).astype(np.float32), probs=probs, index=index,
                ignored=ignored, cw=(rng.random(c) + 0.5).astype(np.float32),
                rows=rng.random(n).astype(np.float32), where=rng.random((n, c)) > 0.1,
                vocab=rng.random(c) > 0.1)  # a mask shared by every row (a vocabulary's)


class Framework:
    """How to bring arrays to a backend and time a call there."""

    name = "numpy"

    def tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return arrays

    def timed(self, fn: Callable[..., Any], t: dict[str, Any]) -> Callable[[], object]:
        return lambda: fn(**t)


class Torch(Framework):
    name = "torch"

    def tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(v) for k, v in arrays.items()}


class TensorFlow(Framework):
    name = "tensorflow"

    def tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        import tensorflow as tf

        return {k: tf.constant(v) for k, v in arrays.items()}

    def timed(self, fn: Callable[..., Any], t: dict[str, Any]) -> Callable[[], object]:
        return lambda: fn(**t).numpy()


class Jax(Framework):
    name = "jax"

    def tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        import jax.numpy as jnp

        return {k: jnp.asarray(v) for k, v in arrays.items()}

    def timed(self, fn: Callable[..., Any], t: dict[str, Any]) -> Callable[[], object]:
        import jax

        jitted = jax.jit(lambda t: fn(**t))
        return lambda: jitted(t).block_until_ready()


FRAMEWORKS = {f.name: f for f in (Framework(), Torch(), TensorFlow(), Jax())}
sparse = xent.sparse_softmax_cross_entropy_with_logits
dense = xent.softmax_cross_entropy_with_logits

SPARSE: dict[str, Callable[..., Any]] = {
    "ignore_index": lambda x, ignored, **_: sparse(labels=ignored, logits=x,
                                                   ignore_index=IGNORE),
    "label_smoothing": lambda x, index, **_: sparse(labels=index, logits=x,
                                                    label_smoothing=0.1),
    "class_weights": lambda x, index, cw, **_: sparse(labels=index, logits=x, class_weights=cw),
    "weights": lambda x, index, rows, **_: sparse(labels=index, logits=x, weights=rows),
    "where": lambda x, index, where, **_: sparse(labels=index, logits=x, where=where),
    "where[C]": lambda x, index, vocab, **_: sparse(labels=index, logits=x, where=vocab),
    "all": lambda x, ignored, cw, rows, where, **_: sparse(
        labels=ignored, logits=x, ignore_index=IGNORE, label_smoothing=0.1, class_weights=cw,
        weights=rows, where=where),
}
DENSE: dict[str, Callable[..., Any]] = {
    "label_smoothing": lambda x, probs, **_: dense(labels=probs, logits=x, label_smoothing=0.1),
    "class_weights": lambda x, probs, cw, **_: dense(labels=probs, logits=x, class_weights=cw),
    "weights": lambda x, probs, rows, **_: dense(labels=probs, logits=x, weights=rows),
    "where": lambda x, probs, where, **_: dense(labels=probs, logits=x, where=where),
    "where[C]": lambda x, probs, vocab, **_: dense(labels=probs, logits=x, where=vocab),
    "all": lambda x, probs, cw, rows, where, **_: dense(
        labels=probs, logits=x, label_smoothing=0.1, class_weights=cw, weights=rows,
        where=where),
}


def _before_api() -> types.ModuleType | None:
    """``xent/_api.py`` as it was before the options (BEFORE), or None outside git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        source = subprocess.run(["git", "-C", root, "show", f"{BEFORE}:xent/_api.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("xent_api_before")
    exec(compile(source, "xent_api_before.py", "exec"), module.__dict__)  # noqa: S102
    return module


def defaults(fw: Framework, budget: float) -> None:
    before = _before_api()
    if before is None:
        print("  defaults: skipped (not a git checkout)")
        return
    print(f"  defaults (every option at its default vs the API of {BEFORE}; <= 1.10x at 2x3, "
          "<= 1.02x large)")
    for n, c in ((2, 3), *LARGE):
        t = fw.tensors(_inputs(n, c))
        calls = {
            "sparse": (lambda x, index, **_: sparse(
                labels=index, logits=x, weights=None, class_weights=None, label_smoothing=0.0,
                where=None, ignore_index=None),
                lambda x, index, **_: before.sparse_softmax_cross_entropy_with_logits(
                    labels=index, logits=x)),
            "dense": (lambda x, probs, **_: dense(
                labels=probs, logits=x, weights=None, class_weights=None, label_smoothing=0.0,
                where=None), lambda x, probs, **_: before.softmax_cross_entropy_with_logits(
                    labels=probs, logits=x)),
        }
        for name, (now, then) in calls.items():
            t_now, t_then = interleaved_min([fw.timed(now, t), fw.timed(then, t)], budget,
                                            clock=CLOCK[0])
            target = 1.10 if n * c < 1000 else 1.02
            _row(f"{n}x{c}", f"{name} defaults", t_then, t_now, target)


def options(fw: Framework, budget: float) -> None:
    print("  options (vs the same call without options; <= 1.3x, ignore_index <= 1.1x)")
    plain = {"sparse": lambda x, index, **_: sparse(labels=index, logits=x),
             "dense": lambda x, probs, **_: dense(labels=probs, logits=x)}
    for n, c in LARGE:
        t = fw.tensors(_inputs(n, c))
        for kind, table in (("sparse", SPARSE), ("dense", DENSE)):
            base = fw.timed(plain[kind], t)
            for name, fn in table.items():
                t_base, t_opt = interleaved_min([base, fw.timed(fn, t)], budget,
                                                clock=CLOCK[0])
                _row(f"{n}x{c}", f"{kind} {name}", t_base, t_opt,
                     1.1 if name == "ignore_index" else 1.3)


def torch_native(budget: float) -> None:
    import torch
    import torch.nn.functional as F

    print("  torch: xent vs F.cross_entropy with the same options (<= 1.1x)")
    for n, c in LARGE:
        a = _inputs(n, c)
        x, index, ignored = (torch.from_numpy(a[k]) for k in ("x", "index", "ignored"))
        cw = torch.from_numpy(a["cw"])
        xg = x.clone().requires_grad_(True)
        pairs = {
            "class_weights": (lambda x: sparse(labels=index, logits=x, class_weights=cw),
                              lambda x: F.cross_entropy(x, index, weight=cw, reduction="none")),
            "ignore_index": (lambda x: sparse(labels=ignored, logits=x, ignore_index=IGNORE),
                             lambda x: F.cross_entropy(x, ignored, ignore_index=IGNORE,
                                                       reduction="none")),
            "label_smoothing": (lambda x: sparse(labels=index, logits=x, label_smoothing=0.1),
                                lambda x: F.cross_entropy(x, index, label_smoothing=0.1,
                                                          reduction="none")),
        }
        for name, (ours, native) in pairs.items():
            t_n, t_o = interleaved_min([lambda native=native: native(x),
                                        lambda ours=ours: ours(x)], budget)
            _row(f"{n}x{c}", f"{name} fwd", t_n, t_o, 1.1)

            def step(f: Callable[[Any], Any]) -> Callable[[], object]:
                return lambda: torch.autograd.grad(f(xg).sum(), xg)

            t_n, t_o = interleaved_min([step(native), step(ours)], budget)
            _row(f"{n}x{c}", f"{name} fwd+bwd", t_n, t_o, 1.1)


def torch_gradients(budget: float) -> None:
    import torch

    print("  torch: forward+backward, vs the same call without options (<= 1.3x)")
    plain = {"sparse": lambda x, index, **_: sparse(labels=index, logits=x),
             "dense": lambda x, probs, **_: dense(labels=probs, logits=x)}
    for n, c in LARGE:
        t = Torch().tensors(_inputs(n, c))
        xg = t["x"].clone().requires_grad_(True)

        def step(f: Callable[..., Any]) -> Callable[[], object]:
            return lambda: torch.autograd.grad(f(**{**t, "x": xg}).sum(), xg)

        for kind, table in (("sparse", SPARSE), ("dense", DENSE)):
            for name, fn in table.items():
                t_base, t_opt = interleaved_min([step(plain[kind]), step(fn)], budget,
                                                clock=CLOCK[0])
                _row(f"{n}x{c}", f"{kind} {name} fwd+bwd", t_base, t_opt,
                     1.1 if name == "ignore_index" else 1.3)


def _row(shape: str, case: str, t_base: float, t_ours: float, target: float) -> None:
    ratio = t_ours / t_base
    verdict = "ok" if ratio <= target else "SLOW"
    print(f"  {shape:>10}  {case:<30} {fmt_time(t_base)} {fmt_time(t_ours)} {ratio:7.2f}x"
          f"  <= {target}x {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing budgets")
    parser.add_argument("--cpu", action="store_true",
                        help="time the defaults and options tables in process CPU time")
    parser.add_argument("--only", default=",".join(FRAMEWORKS),
                        help="comma-separated backends (default: all)")
    parser.add_argument("--tables", default="defaults,options,torch,grad",
                        help="comma-separated tables to print (default: all four; torch "
                        "and grad are torch's)")
    args = parser.parse_args()
    budget = 0.3 if args.quick else 1.0
    if args.cpu:
        CLOCK[0] = time.process_time
    tables = args.tables.split(",")
    for name in args.only.split(","):
        print(f"\n=== {name} " + "=" * 60)
        if importlib.util.find_spec(name) is None:
            print(f"{name} is not installed: skipped")
            continue
        fw = FRAMEWORKS[name]
        print(f"  {'shape':>10}  {'case':<30} {'baseline':>12} {'xent':>12} {'ratio':>8}")
        if "defaults" in tables:
            defaults(fw, budget)
        if "options" in tables:
            options(fw, budget)
        if name == "torch" and "torch" in tables:
            torch_native(budget)
        if name == "torch" and "grad" in tables:
            torch_gradients(budget)


if __name__ == "__main__":
    main()
