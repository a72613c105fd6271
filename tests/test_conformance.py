"""The conformance catalog, run by the project's own tests.

Every case in every dtype on every requested backend in each of its modes, execution modes
and transform modes alike, is one test (id ``case-dtype-backend-mode``, asserting every
quantity of that cell, forward mode included), so CI holds each backend to the same exact
reference as ``xent conformance``; ``test_pairwise`` checks that the targets agree with each
other. See ``xent.conformance`` for the metric and tolerances.

``XENT_TEST_BACKENDS=numpy,jax`` narrows the run; ``-k confident`` picks a case.
"""

from __future__ import annotations

from typing import Any

import pytest

from xent.conformance import cases, report, runner

BUILTIN = ("numpy", "torch", "tensorflow", "jax")
#: option cases every transform mode runs in the tests too (float32): the options hold
#: under the frameworks' transforms
OPTION_CASES_UNDER_TRANSFORMS = ("opt_combined", "opt_ignore_index", "opt_where", "opt_zero_batch")


#: 16-bit dtypes in a backend's later execution modes (tf.function, TF1 graphs, jax.jit):
#: the same upcasting code as in its first mode, where the whole catalog runs in them; here
#: these cases, which stress it (xent conformance runs everything)
HALF_CASES_BEYOND_FIRST_MODE = ("seed", "confident", "masked", "nan_row", "inf_rows",
                                "rank3_axis1", "large_classes", "sparse_out_of_range",
                                "opt_combined", "opt_ignore_index")
HALF = ("float16", "bfloat16")


def _in_test_subset(target: Any, name: str, dtype: str) -> bool:
    """Whether the test suite runs case ``name`` in ``dtype`` in ``target``'s mode (a slow
    transform mode declares a subset: ``Backend.transform_test_subset``)."""
    subset = getattr(target.backend, "transform_test_subset", {}).get(target.mode)
    if subset is None:
        if dtype in HALF and target.mode in target.backend.modes[1:]:
            return name in HALF_CASES_BEYOND_FIRST_MODE
        return True
    names, dtypes = subset
    limits = getattr(target.backend, "captured_option_limits", {}).get(target.mode, ((), ""))
    return (name in names and dtype in dtypes) or (
        name in OPTION_CASES_UNDER_TRANSFORMS and dtype == "float32" and "all" not in limits[0])

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


def test_catalog(cell: tuple[str, str], conformance_target: Any) -> None:
    name, dtype = cell
    target = conformance_target
    if not target.supports(dtype):
        pytest.skip(f"{target.name} does not list {dtype} in its dtypes")
    if not _in_test_subset(target, name, dtype):
        pytest.skip(f"{target}: outside the test suite's subset of this mode (xent "
                    "conformance runs the whole catalog)")
    records = evaluation(name, dtype, target).records
    failed = [r for r in records if r.passed is False]
    assert not failed, "\n" + report.failures(failed)
    assert any(r.passed for r in records), "nothing was measured"
    if target.backend.has_autodiff and target.name in BUILTIN:  # built-ins have forward mode
        limits = getattr(target.backend, "captured_option_limits", {}).get(target.mode, ((), ""))
        unmeasured = [r for r in records if r.quantity in runner.FORWARD and r.passed is None
                      and r.detail != limits[1]]
        assert not unmeasured, "\n" + "\n".join(f"{r.quantity}: {r.detail}" for r in unmeasured)


@pytest.fixture(scope="session")
def all_targets(request: pytest.FixtureRequest) -> list[Any]:
    """Every requested (backend, mode), transform modes included: conftest's
    ``conformance_targets``, found through the plugin manager so that it does not depend on
    how conftest is imported."""
    for plugin in request.config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "conformance_targets", None)) and hasattr(plugin, "Target"):
            return list(plugin.conformance_targets())
    raise RuntimeError("conftest.conformance_targets not found")


VALUE_CELLS = [(c, d) for c, d in CELLS if cases.BY_NAME[c].kind == "values"]


@pytest.mark.parametrize("pair_cell", VALUE_CELLS, ids=[f"{c}-{d}" for c, d in VALUE_CELLS])
def test_pairwise(pair_cell: tuple[str, str], all_targets: list[Any]) -> None:
    name, dtype = pair_cell
    done = [(f"{t.name}/{t.mode}", evaluation(name, dtype, t))
            for t in all_targets if t.supports(dtype) and _in_test_subset(t, name, dtype)]
    if len(done) < 2:
        pytest.skip(f"fewer than two requested targets support {dtype}")
    exact = [r for _, e in done for r in e.records]
    pairs = list(runner.pairwise(name, dtype, done))
    # a disagreement with a target that fails test_catalog is reported there
    failed = runner.unexplained(exact + pairs)
    assert not failed, "\n" + report.failures(failed)
