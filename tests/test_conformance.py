"""The conformance catalog, run by the project's own tests.

Every case in every dtype on every requested backend in each of its modes is one test
(id ``case-dtype-backend-mode``, asserting every quantity of that cell), so CI holds each
backend to the same exact reference as ``xent conformance``; ``test_pairwise`` checks that
the targets agree with each other. See ``xent.conformance`` for the metric and tolerances.

``XENT_TEST_BACKENDS=numpy,jax`` narrows the run; ``-k confident`` picks a case.
"""

from __future__ import annotations

from typing import Any

import pytest

from xent.conformance import cases, report, runner

CELLS = [(name, dtype) for name in cases.case_names() for dtype in cases.DTYPES]

_evaluations: dict[tuple[str, str, str, str], runner.Evaluation] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # runs before conftest's hook, so the ids read case-dtype-backend-mode
    if "cell" in metafunc.fixturenames:
        metafunc.parametrize("cell", CELLS, ids=[f"{c}-{d}" for c, d in CELLS])


def evaluation(name: str, dtype: str, target: Any) -> runner.Evaluation:
    """The evaluation of one cell, computed once per session (the pairwise test reuses it)."""
    key = (name, dtype, target.name, target.mode)
    if key not in _evaluations:
        _evaluations[key] = runner.evaluate(name, dtype, target.backend, target.mode)
    return _evaluations[key]


def test_catalog(cell: tuple[str, str], target: Any) -> None:
    name, dtype = cell
    if not target.supports(dtype):
        pytest.skip(f"{target.name} does not list {dtype} in its dtypes")
    records = evaluation(name, dtype, target).records
    failed = [r for r in records if r.passed is False]
    assert not failed, "\n" + report.failures(failed)
    assert any(r.passed for r in records), "nothing was measured"


@pytest.fixture(scope="session")
def all_targets(request: pytest.FixtureRequest) -> list[Any]:
    """Every requested (backend, mode): conftest's ``all_targets``, found through the plugin
    manager so that it does not depend on how conftest is imported."""
    for plugin in request.config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "all_targets", None)) and hasattr(plugin, "Target"):
            return list(plugin.all_targets())
    raise RuntimeError("conftest.all_targets not found")


VALUE_CELLS = [(c, d) for c, d in CELLS if cases.BY_NAME[c].kind == "values"]


@pytest.mark.parametrize("pair_cell", VALUE_CELLS, ids=[f"{c}-{d}" for c, d in VALUE_CELLS])
def test_pairwise(pair_cell: tuple[str, str], all_targets: list[Any]) -> None:
    name, dtype = pair_cell
    done = [(f"{t.name}/{t.mode}", evaluation(name, dtype, t))
            for t in all_targets if t.supports(dtype)]
    if len(done) < 2:
        pytest.skip(f"fewer than two requested targets support {dtype}")
    exact = [r for _, e in done for r in e.records]
    pairs = list(runner.pairwise(name, dtype, done))
    # a disagreement with a target that fails test_catalog is reported there
    failed = runner.unexplained(exact + pairs)
    assert not failed, "\n" + report.failures(failed)
