"""Every framework backend against its native call, in one run.

    python benchmarks/backends.py [--quick] [--only torch,tensorflow,jax]

Runs ``backends_torch.py``, ``backends_tensorflow.py`` and ``backends_jax.py`` one after
the other in this process (each prints its own table of xent / native ratios, forward and
forward + backward, at 4096x1000, 256x32000, 64x128256 and 2x3). Frameworks that are not
installed are reported and skipped. Ratios from one run are what to compare.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FRAMEWORKS = ("torch", "tensorflow", "jax")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing budgets")
    parser.add_argument("--only", default=",".join(FRAMEWORKS),
                        help="comma-separated frameworks (default: all)")
    args = parser.parse_args()
    for framework in args.only.split(","):
        print(f"\n=== {framework} " + "=" * 60)
        if importlib.util.find_spec(framework) is None:
            print(f"{framework} is not installed: skipped")
            continue
        script = importlib.import_module(f"backends_{framework}")
        script.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    main()
