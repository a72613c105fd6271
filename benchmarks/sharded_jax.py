"""JAX: the losses on a mesh of 8 simulated CPU devices against one device.

    python benchmarks/sharded_jax.py [--quick] [--devices 8]

The same ``jit``-ted call (the sparse and the dense loss, forward and forward + backward,
float32) on one device, and on 8 devices as GSPMD sees them (a ``NamedSharding`` that
splits the batch 8 ways, the class axis 8 ways, or both 2 x 4) and inside ``jax.shard_map``
with ``axis_name=`` (2 x 4). Each row also gives the collectives of the compiled programs
(all-reduces; with the backward, the sum of a batch-split loss adds one). The simulated
devices share this machine's cores (``--xla_force_host_platform_device_count``): the ratio
is the cost of partitioning and of the collectives on one host, not a speed-up. ``main()``
re-runs this script in a subprocess with ``XLA_FLAGS`` set when JAX is already imported
without those devices.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

SHAPES = ((256, 32000), (64, 128256))


def _flags(devices: int) -> str:
    return f"--xla_force_host_platform_device_count={devices}"


def seconds(fns: list[Callable[[], Any]], budget: float) -> list[float]:
    """Minimum wall time of one call of each of ``fns``, in alternating rounds."""
    import jax

    for fn in fns:
        jax.block_until_ready(fn())  # compile and warm up
    best = [float("inf")] * len(fns)
    start = time.perf_counter()
    rounds = 0
    while rounds < 3 or (time.perf_counter() - start < budget and rounds < 50):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            best[i] = min(best[i], time.perf_counter() - t)
        rounds += 1
    return best


def _all_reduces(compiled: Any) -> int:
    return len(re.findall(r" all-reduce(?:-start)?\(", compiled.as_text()))


def rows(budget: float, devices: int) -> list[tuple[str, str, str, float, float, str]]:
    import jax
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import xent

    mesh = jax.make_mesh((2, devices // 2), ("batch", "classes"),
                         axis_types=(AxisType.Auto, AxisType.Auto))
    rng = np.random.default_rng(0)
    out = []
    for n, c in SHAPES:
        x = rng.standard_normal((n, c), dtype=np.float32) * 3
        s = rng.integers(0, c, n)
        y = np.zeros((n, c), np.float32)
        y[np.arange(n), s] = 1.0
        losses = {
            "sparse": (lambda s, x, **k: xent.sparse_softmax_cross_entropy_with_logits(
                labels=s, logits=x, **k), s),
            "dense": (lambda y, x, **k: xent.softmax_cross_entropy_with_logits(
                labels=y, logits=x, **k), y),
        }
        for name, (loss, labels) in losses.items():
            dense = labels.ndim == 2

            def shard_mapped(labels: Any, x: Any, loss: Any = loss) -> Any:
                return loss(labels, x, axis_name="classes")

            both = P("batch", "classes")
            sharded = jax.shard_map(shard_mapped, mesh=mesh, out_specs=P("batch"),
                                    in_specs=(both if dense else P("batch"), both))
            # (function, logits' spec): labels follow the logits (sparse: their batch)
            every = ("batch", "classes")  # all 8 devices
            placements = {"one device": (loss, None), "GSPMD batch": (loss, P(every, None)),
                          "GSPMD classes": (loss, P(None, every)),
                          "GSPMD both": (loss, both), "shard_map axis_name": (sharded, both)}
            for step in ("fwd", "fwd+bwd"):
                calls, counts = [], []
                for f, spec in placements.values():
                    if spec is None:
                        args = [jax.device_put(a, jax.devices()[0]) for a in (labels, x)]
                    else:
                        lspec = spec if dense else P(spec[0])
                        args = [jax.device_put(a, NamedSharding(mesh, sp))
                                for a, sp in ((labels, lspec), (x, spec))]
                    fn = f if step == "fwd" else jax.value_and_grad(
                        lambda lab, x, f=f: f(lab, x).sum(), argnums=1)
                    compiled = jax.jit(fn).lower(*args).compile()
                    counts.append(_all_reduces(compiled))
                    calls.append(lambda c=compiled, a=args: c(*a))
                times = seconds(calls, budget)
                for placement, t, k in zip(placements, times, counts):
                    out.append((f"{n}x{c}", f"{name} {step}", placement, t, times[0], str(k)))
    return out


def run(argv: list[str]) -> None:
    import jax

    budget = 0.3 if "--quick" in argv else 2.0
    devices = jax.device_count()
    print(f"JAX {jax.__version__}, {devices} simulated CPU devices on {os.cpu_count()} cores, "
          "float32, min wall time over interleaved repeats; ratio = mesh / one device; "
          "all-reduces in the compiled program")
    print(f"{'shape':>10} {'call':<16}{'placement':<22}{'time':>12}{'ratio':>8}"
          f"{'all-reduces':>13}")
    for shape, call, placement, t, base, k in rows(budget, devices):
        print(f"{shape:>10} {call:<16}{placement:<22}{t * 1e3:>9.2f} ms{t / base:>8.2f}{k:>13}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    devices = int(args[args.index("--devices") + 1]) if "--devices" in args else 8
    if _flags(devices) in os.environ.get("XLA_FLAGS", "") and (
            "jax" not in sys.modules or sys.modules["jax"].device_count() == devices):
        run(args)
        return
    env = {**os.environ, "XLA_FLAGS": _flags(devices), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                          check=False)
    if done.returncode:
        raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
