"""JAX on sharded inputs (DESIGN section 9): GSPMD meshes and ``axis_name=`` in shard_map.

The multi-device checks run on 8 simulated CPU devices in one subprocess
(``tests/jax_mesh_checks.py``: XLA's device count is fixed when JAX is imported, and JAX
starts slowly); each group of checks is one test here. The rest runs in this process, on
its one device: errors, and the one-device programs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax_mesh_checks
import numpy as np
import pytest

import xent

needs_jax = pytest.mark.skipif(
    "jax" not in (os.environ.get("XENT_TEST_BACKENDS") or "jax").split(","),
    reason="jax is not in XENT_TEST_BACKENDS")
CHECKS = Path(jax_mesh_checks.__file__)


@pytest.fixture(scope="module")
def mesh_checks() -> dict[str, Any]:
    """The JSON of one run of ``tests/jax_mesh_checks.py`` on 8 simulated devices."""
    env = {**os.environ, "XLA_FLAGS": jax_mesh_checks.FLAGS, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(CHECKS.parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(CHECKS)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@needs_jax
@pytest.mark.parametrize("group", jax_mesh_checks.GROUPS)
def test_on_8_devices(group: str, mesh_checks: dict[str, Any]) -> None:
    failures = mesh_checks["failures"][group]
    assert not failures, "\n".join(failures)


@needs_jax
def test_collectives_read_from_the_compiled_programs(mesh_checks: dict[str, Any]) -> None:
    """What the README's table states, from the HLO: per function, the forward's collectives
    and, after ``|``, the backward's (class axis split over 4 devices)."""
    found = mesh_checks["collectives"]
    for name, backward in (("dense", 0), ("sparse", 0), ("log_softmax", 1), ("softmax", 1)):
        for program in (f"shard_map/{name}", f"gspmd/Auto/classes/{name}",
                        f"gspmd/Auto/both/{name}", f"gspmd/Explicit/both/{name}"):
            forward, after = " ".join(found[program]).split("|")
            assert forward.count("all-reduce") == 2, (program, found[program])
            assert after.count("all-reduce") == backward, (program, found[program])
        assert found[f"gspmd/Auto/batch/{name}"] == ["|"]
    assert all(op == "|" or op.startswith("all-reduce")
               for ops in found.values() for op in ops), "only all-reduces"


def test_axis_name_on_a_backend_without_mesh_axes_is_a_type_error(backend: Any) -> None:
    if backend.name == "jax":
        pytest.skip("JAX has mesh axes (checked on 8 devices)")
    x = backend.asarray(np.zeros((2, 3), np.float32))
    calls = (lambda: xent.softmax(x, axis_name="model"),
             lambda: xent.log_softmax(x, axis_name="model"),
             lambda: xent.softmax_cross_entropy_with_logits(
                 labels=np.zeros((2, 3)), logits=x, axis_name="model"),
             lambda: xent.sparse_softmax_cross_entropy_with_logits(
                 labels=[0, 1], logits=x, axis_name="model"))
    for call in calls:
        with pytest.raises(TypeError) as error:
            call()
        assert str(error.value) == (
            "axis_name: 'model' names a mesh axis that splits the class axis, which only JAX "
            f"arrays inside jax.shard_map have; {backend.name} logits have none (leave "
            "axis_name out)")


@needs_jax
def test_axis_name_outside_a_shard_map_over_it_is_a_value_error() -> None:
    import jax.numpy as jnp

    with pytest.raises(ValueError, match="axis_name: 'model' is not a mesh axis of an "
                                         "enclosing jax.shard_map"):
        xent.softmax_cross_entropy_with_logits(
            labels=jnp.ones((2, 3)), logits=jnp.zeros((2, 3)), axis_name="model")


@needs_jax
def test_axis_name_on_a_one_device_mesh_equals_the_unsharded_call() -> None:
    import jax
    from jax.sharding import AxisType
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((1, 1), ("data", "model"), devices=jax.devices()[:1],
                         axis_types=(AxisType.Auto, AxisType.Auto))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    s = np.array([0, 4, 2, 7])  # 7: out of range, a NaN row (no error in a shard_map)

    def per_device(s: Any, x: Any) -> Any:
        return (xent.sparse_softmax_cross_entropy_with_logits(labels=s, logits=x,
                                                              axis_name=("model",)),
                xent.log_softmax(x, axis_name="model"))

    loss, log_p = jax.jit(jax.shard_map(per_device, mesh=mesh,
                                        in_specs=(P("data"), P("data", "model")),
                                        out_specs=(P("data"), P("data", "model"))))(s, x)
    want = xent.sparse_softmax_cross_entropy_with_logits(labels=np.minimum(s, 4), logits=x)
    np.testing.assert_allclose(loss[:3], want[:3], rtol=2e-7)
    assert np.isnan(loss[3])
    np.testing.assert_allclose(log_p, xent.log_softmax(x), rtol=2e-7, atol=1e-7)


@needs_jax
def test_one_device_programs_keep_their_fused_kernels() -> None:
    """On one device the partitioned branch is gone from the compiled program: the dense
    loss keeps its masked-class lax.cond (64 x 512 is above its small size) and nothing
    of the vocab-parallel steps (no log1p)."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((64, 512), jnp.float32)
    text = jax.jit(lambda y, x: xent.softmax_cross_entropy_with_logits(
        labels=y, logits=x)).lower(x, x).compile().as_text()
    assert text.count("conditional(") == 1
    assert "log-plus-one" not in text
