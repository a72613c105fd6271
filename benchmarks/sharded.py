"""Sharded inputs on every engine, in one run.

    python benchmarks/sharded.py [--quick] [--only torch,jax,dask]

Runs, one after the other, ``sharded_torch.py`` (DTensor at 2 and 4 ranks: sparse
forward+backward vs ``loss_parallel()`` + ``F.cross_entropy``, dense vs gathering the logits
+ ``F.cross_entropy``, with collective counts), ``sharded_jax.py`` (a JAX mesh of simulated
CPU devices vs the unsharded call, with the collectives read from the compiled HLO) and
``sharded_dask.py`` (time and peak memory of the sparse loss on a lazily generated
3.9 GiB input). Each script prints its own table; ``--quick`` uses smaller inputs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ENGINES = {"torch": ("torch", "sharded_torch"), "jax": ("jax", "sharded_jax"),
           "dask": ("dask", "sharded_dask")}
QUICK = {"torch": ["--rows", "128", "--classes", "8192", "--repeat", "3"],
         "jax": ["--quick"],
         "dask": ["--rows", "1024", "--classes", "32768"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--only", default=",".join(ENGINES),
                        help="comma-separated engines (default: all)")
    args = parser.parse_args()
    for engine in args.only.split(","):
        framework, script = ENGINES[engine]
        print(f"\n=== {engine} " + "=" * 60, flush=True)
        if importlib.util.find_spec(framework) is None:
            print(f"{framework} is not installed: skipped")
            continue
        if importlib.util.find_spec(script) is None:
            print(f"benchmarks/{script}.py is missing: skipped")
            continue
        importlib.import_module(script).main(QUICK[engine] if args.quick else [])


if __name__ == "__main__":
    main()
