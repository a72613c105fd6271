"""README "Swap frameworks with one import": its examples run, and the loss line moved from
torch to JAX by one import gives torch's numbers."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Swap frameworks with one import"):]
    section = section[:section.index("\n## ", 5)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    return out.getvalue()


def test_torch_loop_moves_to_jax_with_one_import() -> None:
    pytest.importorskip("torch", reason="the README's original runs on torch")
    pytest.importorskip("jax", reason="the README's port runs on JAX")
    torch_loop, jax_loop, _ = _examples()
    for loop in (torch_loop, jax_loop):
        assert "F.cross_entropy(" in loop and "label_smoothing=0.1)" in loop
    torch_loss = float(_run(torch_loop).split(":")[1])
    jax_loss = float(_run(jax_loop).split(":")[1])
    assert abs(torch_loss - jax_loss) < 1e-4, (torch_loss, jax_loss)


def test_keras_loss_runs_on_torch() -> None:
    pytest.importorskip("torch", reason="the README's port runs on torch")
    out = _run(_examples()[2])
    assert np.isfinite(float(out.split(":")[1]))


@pytest.mark.parametrize("module", ["xent.compat.torch.nn", "xent.compat.torch.nn.functional",
                                    "xent.compat.optax", "xent.compat.jax.nn",
                                    "xent.compat.keras.losses", "xent.compat.v1.losses"])
def test_twin_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(module))
    assert tried and not failures
