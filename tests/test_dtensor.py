"""The torch DTensor backend: sharded logits on gloo groups of 2 and 4 ranks.

The ranks are worker processes (``xent.backends._torch_dtensor_pool.Pool``, forked from a
server that has imported torch): one group of 2 and one of 4 for this module. Each rank
runs every check of ``dtensor_checks`` (the four functions, forward and backward, with
labels in every form; the options and reductions; out-of-range labels; the README example)
for logits sharded on the classes (uneven, and an empty shard), the rows, both (2-D meshes),
replicated and pending sums, counting the collectives of each call. The conformance
catalog's subset runs on the group of 2 in both modes (``DTensorBackend.mode_cases``).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import dtensor_checks as checks
import numpy as np
import pytest

import xent
from xent.backends import _torch_dtensor_pool as pools
from xent.conformance import cases, report, runner

DTENSOR = xent.backends.get("dtensor")


def readme_example() -> str:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    found = re.search(r"^### torch DTensor\n.*?```python\n(.*?)```", text, re.S | re.M)
    assert found, "README: no python example under ### torch DTensor"
    return found.group(1)


@pytest.fixture(scope="module")
def two() -> list[checks.Report]:
    return pools.pool(2).call(checks.run, 2, readme_example())


@pytest.fixture(scope="module")
def four() -> list[checks.Report]:
    reports = pools.pool(4).call(checks.run, 4)
    pools.close_pool(4)  # its 4 processes are not needed again
    return reports


def _class_splits(mesh_shape: tuple[int, ...], placements: tuple[Any, ...], axis: int) -> int:
    return sum(p.is_shard(axis) and n > 1 for p, n in zip(placements, mesh_shape))


def _check(reports: list[checks.Report], setups: dict[str, Any]) -> None:
    failures = [f"rank {r}: {f}" for r, rep in enumerate(reports) for f in rep.failures]
    assert not failures, "\n".join(failures[:20])
    for name, (mesh_shape, placements, shape, axis) in setups.items():
        if any(p.is_partial() for p in placements):
            continue  # the pending sums are reduce-scattered first (and all-gathered back)
        k = _class_splits(mesh_shape, placements, axis)
        counts = reports[0].counts
        for fn in ("softmax", "log_softmax"):
            assert counts[f"{name} {fn}"] == (2 * k, k), (name, fn)
        for fn in ("dense", "sparse"):
            assert counts[f"{name} {fn}"] == (2 * k, 0), (name, fn)
        rows = math.prod(shape) // shape[axis]
        for op, size in reports[0].calls.get(name, []):
            assert "all_reduce" in op and size <= 4 * rows, (name, op, size)  # never logits


def test_two_ranks(two: list[checks.Report]) -> None:
    _check(two, checks.SETUPS_2)


def test_four_ranks(four: list[checks.Report]) -> None:
    _check(four, checks.SETUPS_4)


# -- the conformance catalog on 2 ranks -------------------------------------------------------
CELLS = [(mode, name, dtype) for mode, names in DTENSOR.mode_cases.items()
         for name in names for dtype in DTENSOR.mode_dtypes[mode]]


@pytest.mark.parametrize("mode,name,dtype", CELLS, ids=["-".join(c) for c in CELLS])
def test_conformance(mode: str, name: str, dtype: str) -> None:
    records = runner.evaluate(name, dtype, DTENSOR, mode).records
    failed = [r for r in records if r.passed is False]
    assert not failed, "\n" + report.failures(failed)
    assert any(r.passed for r in records)


def test_conformance_subset_names_real_cases() -> None:
    assert set(DTENSOR.mode_cases) == set(DTENSOR.modes) == set(DTENSOR.tracing_modes)
    for names in DTENSOR.mode_cases.values():
        assert set(names) <= set(cases.case_names())


# -- dispatch, in this process --------------------------------------------------------------
def test_dispatch_never_imports_torch_distributed_tensor() -> None:
    code = ("import sys, torch, xent\n"
            "xent.softmax(torch.ones(3)); xent.backends.available()\n"
            "print('torch.distributed.tensor' in sys.modules, xent.backends.available())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert out[0] == "False" and "'dtensor'" in out[1]


def test_a_dtensor_is_owned_by_dtensor_before_torch() -> None:
    order = [name for _, name in xent.backends.builtin_candidates()]
    assert order.index("dtensor") < order.index("torch")


def test_framework_neutral_input_needs_a_mesh() -> None:
    with pytest.raises(TypeError, match="dtensor: framework-neutral input has no device mesh"):
        xent.softmax(np.ones(3), backend="dtensor")
