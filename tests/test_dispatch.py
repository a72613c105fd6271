"""Dispatch: by the type of logits, never importing a framework; backend choice for NumPy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

import xent
from xent import _dispatch
from xent.backends import Backend, _numpy

LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])


def run_python(code: str, **env: str) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


FRAMEWORKS = "[m for m in ('torch', 'tensorflow', 'jax', 'jaxlib') if m in sys.modules]"


def test_import_and_numpy_call_import_no_framework() -> None:
    out = run_python(
        "import sys, xent\n"
        "xent.softmax_cross_entropy_with_logits(labels=[[0., 1.]], logits=[[1., 2.]])\n"
        "xent.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=[[1., 2.]])\n"
        "xent.compat.v1.nn.softmax([1., 2.])\n"
        "xent.backends.available()\n"
        f"print({FRAMEWORKS})"
    )
    assert out == "[]"


def test_xent_backend_environment_variable(backend: Backend) -> None:
    out = run_python(
        "import xent\n"
        "y = xent.softmax([1., 2.])\n"
        "print(xent.backends.get(xent._dispatch.chosen_backend(None).name).name,"
        " type(y).__module__.split('.')[0])",
        XENT_BACKEND=backend.name,
    )
    name, module = out.split()
    assert name == backend.name
    assert module == {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow",
                      "jax": "jaxlib"}.get(backend.name, module)


def test_explicit_backend_then_context_then_default(backend: Backend) -> None:
    assert _dispatch.chosen_backend(None).name == "numpy"
    with xent.use_backend(backend.name):
        assert backend.owns(xent.softmax(LOGITS)) or backend.name == "numpy"
        with xent.use_backend("numpy"):
            assert isinstance(xent.softmax(LOGITS), np.ndarray)
            out = xent.softmax(LOGITS, backend=backend.name)
            assert backend.owns(out)
    assert isinstance(xent.softmax(LOGITS), np.ndarray)


def test_framework_tensor_with_other_explicit_backend_is_type_error(backend: Backend) -> None:
    if backend.name == "numpy":
        pytest.skip("NumPy input is framework-neutral: any backend may run it")
    x = backend.asarray(LOGITS, dtype="float64" if "float64" in backend.dtypes else "float32")
    with pytest.raises(TypeError, match=f"backend: 'numpy' was requested but logits is a "
                                        f"{backend.name} tensor"):
        xent.softmax(x, backend="numpy")


def test_use_backend_is_context_local_across_threads_and_tasks() -> None:
    seen: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with xent.use_backend(name):
            barrier.wait()
            seen[name] = _dispatch.chosen_backend(None).name

    other = xent.backends.available()[-1]
    threads = [threading.Thread(target=worker, args=(n,)) for n in ("numpy", other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"numpy": "numpy", other: other}

    async def task(name: str) -> str:
        with xent.use_backend(name):
            await asyncio.sleep(0.01)
            return _dispatch.chosen_backend(None).name

    async def main() -> list[str]:
        return list(await asyncio.gather(task("numpy"), task(other)))

    assert asyncio.run(main()) == ["numpy", other]


class ToyTensor:
    """A third-party tensor type: a thin wrapper around a NumPy array."""

    def __init__(self, array: Any) -> None:
        self.array = np.asarray(array)
        self.shape, self.dtype = self.array.shape, self.array.dtype


class ToyBackend(_numpy.NumpyBackend):
    """The reference math on ToyTensor: what a third-party backend looks like."""

    name = "toy"
    module = None
    native_types = ()  # NumPy input is converted to ToyTensor

    def owns(self, x: Any) -> bool:
        return isinstance(x, ToyTensor)

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> Any:
        return ToyTensor(np.asarray(value, dtype=dtype))

    def cast(self, x: Any, dtype: str) -> Any:
        return x

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.array

    def softmax(self, logits: Any, axis: int) -> Any:
        return ToyTensor(super().softmax(logits.array, axis))

    def sparse_softmax_cross_entropy_with_logits(self, labels: Any, logits: Any, axis: int) -> Any:
        return ToyTensor(super().sparse_softmax_cross_entropy_with_logits(
            labels.array, logits.array, axis))

    def first_out_of_range(self, labels: Any, num_classes: int) -> int | None:
        return super().first_out_of_range(labels.array, num_classes)


@pytest.fixture
def toy() -> Any:
    backend = xent.backends.register(ToyBackend())
    yield backend
    from xent import backends

    del backends._loaded["toy"]
    _dispatch._clear_cache()


def test_registered_backend_dispatch(toy: ToyBackend) -> None:
    assert "toy" in xent.backends.available()
    assert xent.backends.get("toy") is toy
    out = xent.softmax(ToyTensor(LOGITS))
    assert isinstance(out, ToyTensor)
    loss = xent.sparse_softmax_cross_entropy_with_logits(labels=[1, 2], logits=ToyTensor(LOGITS))
    np.testing.assert_allclose(loss.array, [0.4790107, 1.19967598], atol=1e-8)
    with pytest.raises(ValueError, match="sparse label 5 is out of range"):
        xent.sparse_softmax_cross_entropy_with_logits(labels=[1, 5], logits=ToyTensor(LOGITS))
    assert isinstance(xent.softmax(LOGITS, backend="toy"), ToyTensor)


def test_register_rejects_incomplete_backend() -> None:
    class Nameless:
        name = ""

    with pytest.raises(TypeError, match="non-empty str `name`"):
        xent.backends.register(Nameless())  # type: ignore[arg-type]

    class Partial:
        name = "partial"

        def owns(self, x: Any) -> bool:
            return False

    with pytest.raises(TypeError, match="lacks the method"):
        xent.backends.register(Partial())  # type: ignore[arg-type]


def test_entry_point_backend(tmp_path: Any) -> None:
    """A package declaring ``[project.entry-points."xent.backends"]`` is found by name."""
    dist = tmp_path / "toy_xent-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-xent\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[xent.backends]\nepbackend = toy_xent:Backend\n")
    (tmp_path / "toy_xent.py").write_text(
        "from xent.backends._numpy import NumpyBackend\n"
        "class Backend(NumpyBackend):\n    name = 'epbackend'\n    module = None\n"
        "    def owns(self, x):\n        return False\n"
    )
    out = run_python(
        "import xent\n"
        "print('epbackend' in xent.backends.available(), xent.backends.get('epbackend').name)\n",
        PYTHONPATH=str(tmp_path),
    )
    assert out == "True epbackend"


def test_owner_cache_is_per_type() -> None:
    assert _dispatch.owner(LOGITS) is None
    assert _dispatch.owner([1.0]) is None
    assert np.ndarray in _dispatch._owner_cache
