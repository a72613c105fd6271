"""One parametrisation for every backend and execution mode.

``XENT_TEST_BACKENDS`` (comma-separated) chooses the backends; the default is every
built-in one. A requested backend that does not import stops the run with an error: in
CI a missing framework is a failure, never a skip.

Fixtures:
  ``backend``: each requested backend object (eager use).
  ``target``: each (backend, execution mode) pair, e.g. ``tensorflow-graph``, ``jax-jit``,
  with ``run(fn, *numpy_arrays)`` and ``value_and_grad(fn, labels, logits)``.
  ``conformance_target``: the same, plus each backend's ``transform_modes`` (e.g.
  ``torch-vmap``, ``jax-export``): the conformance catalog runs through those too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import xent
from xent.backends import Backend

BUILTIN = ("numpy", "torch", "tensorflow", "jax")


def requested_backends() -> list[str]:
    names = os.environ.get("XENT_TEST_BACKENDS", "").strip()
    return [n.strip() for n in names.split(",") if n.strip()] if names else list(BUILTIN)


_loaded: dict[str, Backend] = {}


def pytest_configure(config: pytest.Config) -> None:
    for name in requested_backends():
        try:
            _loaded[name] = xent.backends.get(name)
        except Exception as error:  # noqa: BLE001 - any import failure fails the run
            raise pytest.UsageError(
                f"XENT_TEST_BACKENDS requests {name!r}, which does not load: "
                f"{type(error).__name__}: {error}"
            ) from error


@dataclass(frozen=True)
class Target:
    """A backend in one execution mode."""

    backend: Backend
    mode: str

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def tracing(self) -> bool:
        return self.mode in self.backend.tracing_modes

    def run(self, fn: Any, *args: np.ndarray) -> np.ndarray:
        return self.backend.run(self.mode, fn, *args)

    def value_and_grad(self, fn: Any, labels: np.ndarray, logits: np.ndarray) -> Any:
        return self.backend.value_and_grad(self.mode, fn, labels, logits)

    def supports(self, dtype: str) -> bool:
        return dtype in self.backend.dtypes

    def __str__(self) -> str:
        return f"{self.name}-{self.mode}"


def all_targets() -> list[Target]:
    return [Target(b, mode) for b in _loaded.values() for mode in b.modes]


def conformance_targets() -> list[Target]:
    """Every execution mode and transform mode of the requested backends."""
    return [Target(b, mode) for b in _loaded.values()
            for mode in (*b.modes, *getattr(b, "transform_modes", ()))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        targets = all_targets()
        metafunc.parametrize("target", targets, ids=[str(t) for t in targets])
    if "conformance_target" in metafunc.fixturenames:
        targets = conformance_targets()
        metafunc.parametrize("conformance_target", targets, ids=[str(t) for t in targets])
    if "backend" in metafunc.fixturenames:
        backends = list(_loaded.values())
        metafunc.parametrize("backend", backends, ids=[b.name for b in backends])


@pytest.fixture
def autodiff_target(target: Target) -> Target:
    if not target.backend.has_autodiff:
        pytest.skip(f"{target.name} has no autodiff: gradients are checked on frameworks")
    return target


# -- parallel runs (pytest-xdist: ``-n auto`` in pyproject's addopts) -------------------------
#: modules whose tests share an expensive module fixture (a Dask cluster, a pool of torch
#: ranks, a subprocess of 8 JAX devices, a corpus migration): one worker runs each whole
SHARED_FIXTURE_MODULES = ("test_dask", "test_dtensor", "test_jax_sharded",
                          "test_migrate_acceptance", "test_migrate_semantics")
MAX_WORKERS = 4  # each worker imports torch, TensorFlow and JAX (~1.5 GiB)
_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def work_unit(nodeid: str) -> str:
    """The tests one worker runs together: a conformance cell (its catalog tests and its
    pairwise test share their evaluations), a shared-fixture module, else the test alone."""
    path, _, test = nodeid.partition("::")
    module = path.rpartition("/")[2].removesuffix(".py")
    if module in SHARED_FIXTURE_MODULES:
        return module
    if module == "test_conformance" and "[" in test:
        parts = test.partition("[")[2].rstrip("]").split("-")  # case-dtype[-backend-mode]
        for i, part in enumerate(parts):
            if part in _DTYPE_NAMES:
                return "conformance:" + "-".join(parts[:i + 1])
    return nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnits(config, log)
