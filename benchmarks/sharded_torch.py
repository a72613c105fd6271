"""torch DTensor: the losses' forward + backward on logits sharded on the class axis.

    python benchmarks/sharded_torch.py [--rows 512] [--classes 32768] [--ranks 2,4]
                                       [--repeat 5]

float32 logits ``[rows, classes]`` sharded on the class axis (``Shard(1)``: vocab-parallel)
over a 1-D mesh of CPU ranks (gloo; worker processes with one thread each, from
``xent.backends._torch_dtensor_pool``), against what torch offers:

- sparse (class indices, ``mean``): xent vs ``loss_parallel()`` + ``F.cross_entropy``;
- dense (probabilities, ``mean``): xent vs gathering the logits (``full_tensor()``) +
  ``F.cross_entropy`` (``loss_parallel`` gives wrong gradients for probability targets).

Each rank times forward + backward (a barrier first; the median of ``--repeat`` after a
warm-up); a call's time is the slowest rank's. ``CommDebugMode`` counts each call's
collectives, forward and backward, and the losses are compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def _counts(mode: Any) -> str:
    counts = {str(op).split(".")[-1]: n for op, n in mode.get_comm_counts().items() if n}
    return ", ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "none"


def _time(step: Callable[[], Any], repeat: int) -> float:
    import torch.distributed as dist

    step()  # warm-up (and DTensor's sharding caches)
    times = []
    for _ in range(repeat):
        dist.barrier()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def on_rank(rows: int, classes: int, repeat: int) -> dict[str, Any]:
    """Every measurement, on this rank (all ranks run it together)."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.distributed.tensor.debug import CommDebugMode
    from torch.distributed.tensor.parallel import loss_parallel

    import xent

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, classes, generator=g) * 3
    index = torch.randint(0, classes, (rows,), generator=g)
    probs = torch.softmax(torch.randn(rows, classes, generator=g), -1)
    logits = distribute_tensor(x, mesh, [Shard(1)], src_data_rank=None).requires_grad_()
    sharded_probs = distribute_tensor(probs, mesh, [Shard(1)], src_data_rank=None)

    def xent_sparse() -> Any:
        return xent.sparse_softmax_cross_entropy_with_logits(
            labels=index, logits=logits, reduction="mean")

    def torch_sparse() -> Any:
        with loss_parallel():
            return F.cross_entropy(logits, index)

    def xent_dense() -> Any:
        return xent.softmax_cross_entropy_with_logits(
            labels=sharded_probs, logits=logits, reduction="mean")

    def torch_dense() -> Any:
        return F.cross_entropy(logits.full_tensor(), probs)

    out: dict[str, Any] = {}
    for name, loss_of in (("xent sparse", xent_sparse), ("loss_parallel sparse", torch_sparse),
                          ("xent dense", xent_dense), ("gather dense", torch_dense)):
        parallel = name.startswith("loss_parallel")

        def step(loss_of: Callable[[], Any] = loss_of, parallel: bool = parallel) -> Any:
            logits.grad = None
            loss = loss_of()
            if parallel:
                with loss_parallel():  # its backward must run under it too
                    loss.backward()
            else:
                loss.backward()
            return loss

        with CommDebugMode() as fwd:
            loss = loss_of()
        with CommDebugMode() as bwd:
            if parallel:
                with loss_parallel():
                    loss.backward()
            else:
                loss.backward()
        value = loss.full_tensor() if hasattr(loss, "full_tensor") else loss
        out[name] = {"seconds": _time(step, repeat), "forward": _counts(fwd),
                     "backward": _counts(bwd), "loss": float(value.detach())}
    return out


def measure(ranks: int, rows: int, classes: int, repeat: int) -> dict[str, Any]:
    """The measurements on a group of ``ranks``: the slowest rank's time of each call."""
    from xent.backends import _torch_dtensor_pool as pools

    try:
        results = pools.pool(ranks).call(on_rank, rows, classes, repeat)
    finally:
        pools.close_pool(ranks)
    return {name: dict(results[0][name],
                       seconds=max(r[name]["seconds"] for r in results))
            for name in results[0]}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--classes", type=int, default=32768)
    parser.add_argument("--ranks", default="2,4", help="group sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    print(f"torch DTensor: float32 logits [{args.rows}, {args.classes}] sharded on the class "
          f"axis (Shard(1)), CPU gloo, forward + backward, median of {args.repeat} "
          "(the slowest rank)")
    print(f"{'ranks':>5}  {'call':<21} {'ms':>8} {'ratio':>6}  {'loss':>10}  "
          "collectives forward / backward")
    for ranks in (int(r) for r in args.ranks.split(",")):
        r = measure(ranks, args.rows, args.classes, args.repeat)
        for ours, theirs in (("xent sparse", "loss_parallel sparse"),
                             ("xent dense", "gather dense")):
            for name in (ours, theirs):
                ratio = r[ours]["seconds"] / r[theirs]["seconds"] if name == ours else 1.0
                print(f"{ranks:>5}  {name:<21} {1e3 * r[name]['seconds']:8.1f} {ratio:5.2f}x  "
                      f"{r[name]['loss']:10.6f}  {r[name]['forward']} / {r[name]['backward']}")


if __name__ == "__main__":
    main()
