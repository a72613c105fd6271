"""The JAX backend on 8 simulated CPU devices: checks run in one subprocess.

``tests/test_jax_sharded.py`` runs ``python tests/jax_mesh_checks.py`` once with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (it must be set before JAX is
imported, and JAX starts slowly: one process runs every check) and asserts on the JSON it
prints: ``{"failures": {group: [message, ...]}, "collectives": {program: [op, ...]}}``.

Groups (:data:`GROUPS`): ``gspmd`` (NamedSharding inputs under ``jit`` / ``grad``, automatic
and explicit mesh axes, the class axis, the batch or both sharded), ``gspmd_options``,
``shard_map`` (``axis_name=``), ``shard_map_options``, ``shard_map_accuracy``,
``conformance_mesh`` (the ``mesh`` mode of the catalog), ``readme`` (the README's example).
Collectives are read from the compiled HLO of each program: the forward, and the backward
alone (the VJP's pullback compiled by itself).
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

GROUPS = ("gspmd", "gspmd_options", "shard_map", "shard_map_options", "shard_map_accuracy",
          "conformance_mesh", "readme")
DEVICES = 8
FLAGS = f"--xla_force_host_platform_device_count={DEVICES}"

failures: dict[str, list[str]] = {g: [] for g in GROUPS}
collectives: dict[str, list[str]] = {}


def check(group: str, ok: Any, what: str) -> None:
    if not ok:
        failures[group].append(what)


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 checks; float32 stays float32
    for group, run in (("gspmd", gspmd), ("gspmd_options", gspmd_options),
                       ("shard_map", shard_map), ("shard_map_options", shard_map_options),
                       ("shard_map_accuracy", shard_map_accuracy),
                       ("conformance_mesh", conformance_mesh), ("readme", readme)):
        try:
            run()
        except Exception:  # noqa: BLE001 - reported, the other groups still run
            failures[group].append(traceback.format_exc(limit=6))
    print(json.dumps({"failures": failures, "collectives": collectives}))


# -- helpers --------------------------------------------------------------------------------
_COLLECTIVE = re.compile(r"= (\([^)]*\)|\S+) (all-reduce|all-gather|all-to-all|"
                         r"collective-permute|reduce-scatter|collective-broadcast)(?:-start)?\(")


def ops(compiled: Any) -> list[str]:
    """``"all-reduce f32[16]"``, ... : the collectives of a compiled program."""
    return [f"{kind} {shape}" for shape, kind in _COLLECTIVE.findall(compiled.as_text())]


def programs(name: str, f: Callable[..., Any], *args: Any) -> tuple[Any, list[str], Any,
                                                                     list[str]]:
    """``f(*args)`` with the collectives of its forward program, and the gradient (of the
    finite outputs, weighted) with those of the backward program alone."""
    import jax
    import numpy as np

    forward = jax.jit(f).lower(*args).compile()
    value = forward(*args)
    out, pullback = jax.vjp(lambda x: jax.jit(f)(*args[:-1], x), args[-1])
    host = np.asarray(out)
    weights = np.where(np.isfinite(host), np.cos(np.arange(host.size)).reshape(host.shape), 0)
    ct = jax.device_put(weights.astype(host.dtype), out.sharding)
    backward = jax.jit(lambda pb, ct: pb(ct)).lower(pullback, ct).compile()
    (grad,) = backward(pullback, ct)
    collectives[name] = ops(forward) + ["|"] + ops(backward)
    return value, ops(forward), grad, ops(backward)


def expect_counts(group: str, name: str, fwd: list[str], bwd: list[str], rounds: int,
                  backward: int) -> None:
    """``rounds`` all-reduces forward, ``backward`` backward, nothing else, no predicate."""
    for where_, found, want in (("forward", fwd, rounds), ("backward", bwd, backward)):
        reduces = [o for o in found if o.startswith("all-reduce")]
        check(group, len(reduces) == want and len(found) == want,
              f"{name}: {where_} collectives {found}, expected {want} all-reduce(s)")
        check(group, not any("pred" in o for o in found), f"{name}: a predicate {found}")


def close(a: Any, b: Any, rtol: float, atol: float = 0.0) -> bool:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def problem(rows: int, classes: int, dtype: Any, seed: int = 0) -> tuple[Any, Any, Any]:
    """Logits with masked classes (-inf, label 0 there), soft dense labels, sparse labels
    spread over every shard (the first and last class included)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, classes)) * 3
    s = rng.integers(0, classes, rows)
    s[:2] = [0, classes - 1]
    x[rng.random(x.shape) < 0.1] = -np.inf
    x[np.arange(rows), s] = rng.standard_normal(rows)
    y = np.zeros((rows, classes))
    y[np.arange(rows), s] = 1.0
    y[2] = np.where(np.isfinite(x[2]), rng.random(classes), 0.0)  # soft, 0 where masked
    return x.astype(dtype), y.astype(dtype), s


# -- GSPMD: NamedSharding inputs under jit and grad ------------------------------------------
def gspmd() -> None:
    import jax
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import xent

    # above the one-device program's small size (2**14): its masked-class fix is a lax.cond
    x, y, s = problem(64, 512, np.float32)
    functions = {
        "dense": (lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x), y),
        "sparse": (lambda s, x: xent.sparse_softmax_cross_entropy_with_logits(
            labels=s, logits=x), s),
        "log_softmax": (lambda s, x: xent.log_softmax(x), s),
        "softmax": (lambda s, x: xent.softmax(x), s),
    }
    reference = {name: programs(f"one_device/{name}", f, labels, x)
                 for name, (f, labels) in functions.items()}
    for kind in (AxisType.Auto, AxisType.Explicit):
        mesh = jax.make_mesh((2, 4), ("batch", "classes"), axis_types=(kind, kind))
        placements = {"batch": P("batch", None), "classes": P(None, "classes"),
                      "both": P("batch", "classes")}
        if kind == AxisType.Explicit:
            placements = {"both": placements["both"]}
        for placement, spec in placements.items():
            xs = jax.device_put(x, NamedSharding(mesh, spec))
            for name, (f, labels) in functions.items():
                lspec = spec if labels.ndim == 2 else P(spec[0])
                ls = jax.device_put(labels, NamedSharding(mesh, lspec))
                tag = f"gspmd/{kind.name}/{placement}/{name}"
                value, fwd, grad, bwd = programs(tag, f, ls, xs)
                want_value, _, want_grad, _ = reference[name]
                check("gspmd", close(value, want_value, 2e-6, 1e-6), f"{tag}: values differ")
                check("gspmd", close(grad, want_grad, 2e-5, 1e-6), f"{tag}: gradients differ")
                check("gspmd", np.isfinite(np.asarray(value)[:2]).all() or "softmax" in name,
                      f"{tag}: masked classes gave a non-finite loss")
                sharded_classes = spec[1] is not None
                expect_counts("gspmd", tag, fwd, bwd, 2 if sharded_classes else 0,
                              int(sharded_classes and "softmax" in name))


def gspmd_options() -> None:
    """The language-model options (ignore_index, label_smoothing) on a 2-D mesh."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import xent

    x, _, s = problem(64, 512, np.float32, seed=1)
    s[3:9] = -100
    mesh = jax.make_mesh((2, 4), ("batch", "classes"))
    xs = jax.device_put(x, NamedSharding(mesh, P("batch", "classes")))
    ss = jax.device_put(s, NamedSharding(mesh, P("batch")))

    def lm(s: Any, x: Any) -> Any:
        return xent.sparse_softmax_cross_entropy_with_logits(
            labels=s, logits=x, ignore_index=-100, label_smoothing=0.1)

    value, fwd, grad, bwd = programs("gspmd/options", lm, ss, xs)
    want, _, want_grad, _ = programs("one_device/options", lm, s, x)
    check("gspmd_options", close(value, want, 2e-6, 1e-6), "options: values differ")
    check("gspmd_options", close(grad, want_grad, 2e-5, 1e-6), "options: gradients differ")
    check("gspmd_options", (np.asarray(value)[3:9] == 0).all(), "ignored rows are not 0")
    expect_counts("gspmd_options", "gspmd/options", fwd, bwd, 2, 0)


# -- shard_map with axis_name ---------------------------------------------------------------
def _mesh() -> Any:
    import jax

    return jax.make_mesh((2, 4), ("data", "model"))


def _placed(mesh: Any, *pairs: tuple[Any, Any]) -> list[Any]:
    import jax
    from jax.sharding import NamedSharding

    return [jax.device_put(a, NamedSharding(mesh, spec)) for a, spec in pairs]


def shard_map() -> None:
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    import xent

    mesh = _mesh()
    x, y, s = problem(8, 64, np.float64, seed=2)
    s[4:6] = [64, -1]  # out of range: NaN rows, nothing raised
    xs, ys, ss = _placed(mesh, (x, P("data", "model")), (y, P("data", "model")),
                         (s, P("data")))
    X, L = P("data", "model"), P("data")
    per_device = {
        "dense": (lambda y, x: xent.softmax_cross_entropy_with_logits(
            labels=y, logits=x, axis_name="model"), ys, X, L),
        "sparse": (lambda s, x: xent.sparse_softmax_cross_entropy_with_logits(
            labels=s, logits=x, axis_name="model"), ss, L, L),
        "log_softmax": (lambda s, x: xent.log_softmax(x, axis_name="model"), ss, L, X),
        "softmax": (lambda s, x: xent.softmax(x, axis_name="model"), ss, L, X),
    }
    valid = (s >= 0) & (s < 64)
    exact = {  # the NumPy reference, relatively accurate (float64)
        "dense": xent.softmax_cross_entropy_with_logits(labels=y, logits=x),
        "sparse": np.where(valid, xent.sparse_softmax_cross_entropy_with_logits(
            labels=np.where(valid, s, 0), logits=x), np.nan),
        "log_softmax": xent.log_softmax(x), "softmax": xent.softmax(x)}
    one_device = {
        "dense": lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x),
        "sparse": lambda s, x: xent.sparse_softmax_cross_entropy_with_logits(
            labels=jax.numpy.where(valid, s, 0), logits=x) * np.where(valid, 1.0, np.nan),
        "log_softmax": lambda s, x: xent.log_softmax(x), "softmax": lambda s, x: xent.softmax(x)}
    for name, (f, labels, lspec, out) in per_device.items():
        sharded = jax.shard_map(f, mesh=mesh, in_specs=(lspec, X), out_specs=out)
        tag = f"shard_map/{name}"
        value, fwd, grad, bwd = programs(tag, sharded, labels, xs)
        want = exact[name]
        check("shard_map", np.array_equal(np.isnan(value), np.isnan(want)),
              f"{tag}: NaN where {np.argwhere(np.isnan(value))}, expected "
              f"{np.argwhere(np.isnan(want))}")
        with np.errstate(invalid="ignore"):
            rel = np.nanmax(np.abs(np.asarray(value) - want) / np.maximum(np.abs(want), 1e-300))
        check("shard_map", rel <= 4e-15, f"{tag}: relative error {rel:.3g} > 4e-15")
        reference = {"dense": y, "sparse": s}.get(name, s)
        _, _, want_grad, _ = programs(f"one_device/sm_{name}", one_device[name],
                                      reference, x)
        check("shard_map", close(grad, want_grad, 1e-12, 1e-13), f"{tag}: gradients differ")
        expect_counts("shard_map", tag, fwd, bwd, 2, int("softmax" in name))
    # forward mode: jax.jvp through the shard_map
    dense = jax.shard_map(per_device["dense"][0], mesh=mesh, in_specs=(X, X), out_specs=L)
    t = np.cos(np.arange(x.size)).reshape(x.shape)
    _, got = jax.jit(lambda x, t: jax.jvp(lambda x: dense(ys, x), (x,), (t,)))(
        xs, _placed(mesh, (t, X))[0])
    _, want = jax.jvp(lambda x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x),
                      (x,), (t,))
    check("shard_map", close(got, want, 1e-12, 1e-12), "jvp through shard_map differs")
    # second order (the global maximum's own JVP rule), masked classes included
    small = np.where(np.arange(8) == 3, -np.inf, np.cos(np.arange(64.0)).reshape(8, 8))
    tiny = jax.shard_map(per_device["dense"][0], mesh=mesh, in_specs=(X, X), out_specs=L)
    soft = np.where(np.isfinite(small), 1 / 8, 0)
    soft_placed, small_placed = _placed(mesh, (soft, X), (small, X))
    got = jax.jit(jax.hessian(lambda x: tiny(soft_placed, x).sum()))(small_placed)
    want = jax.hessian(lambda x: xent.softmax_cross_entropy_with_logits(
        labels=soft, logits=x).sum())(small)
    check("shard_map", close(got, want, 1e-12, 1e-14), "hessian through shard_map differs")


def shard_map_options() -> None:
    """Every option with axis_name, equal to the NumPy reference on the whole arrays;
    reductions run over each data shard's rows."""
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    import xent

    mesh = _mesh()
    x, y, s = problem(8, 64, np.float64, seed=3)
    s[[1, 6]] = -100
    rng = np.random.default_rng(4)
    where = rng.random(x.shape) < 0.8
    where[np.arange(8), np.where(s >= 0, s, 0)] = True
    class_weights, weights = rng.random(64) + 0.5, rng.random(8)
    X, L = P("data", "model"), P("data")
    xs, ys, ss, ws, wts = _placed(mesh, (x, X), (y, X), (s, L), (where, X), (weights, L))
    calls = {
        "lm": lambda dense, **k: dict(ignore_index=-100, label_smoothing=0.1),
        "every": lambda dense, **k: dict(label_smoothing=0.2, class_weights=class_weights,
                                         **({} if dense else {"ignore_index": -100})),
    }
    for name, options in calls.items():
        for dense in (False, True):
            for reduction in ("none", "sum", "mean", "weighted_mean"):
                if name == "lm" and dense:
                    continue
                tag = f"shard_map_options/{name}/{'dense' if dense else 'sparse'}/{reduction}"
                fn = (xent.softmax_cross_entropy_with_logits if dense
                      else xent.sparse_softmax_cross_entropy_with_logits)

                def per_device(labels: Any, x: Any, where: Any, weights: Any,
                               fn: Any = fn, dense: bool = dense, name: str = name,
                               reduction: str = reduction, options: Any = options) -> Any:
                    extra = ({"where": where, "weights": weights} if name == "every" else {})
                    out = fn(labels=labels, logits=x, axis_name="model", reduction=reduction,
                             **options(dense), **extra)
                    return out if reduction == "none" else out[None]

                f = jax.jit(jax.shard_map(per_device, mesh=mesh,
                                          in_specs=(X if dense else L, X, X, L),
                                          out_specs=L))
                got = np.asarray(f(ys if dense else ss, xs, ws, wts))
                rows = np.split(np.arange(8), 2) if reduction != "none" else [np.arange(8)]
                want = np.concatenate([np.atleast_1d(fn(
                    labels=(y if dense else s)[r], logits=x[r], reduction=reduction,
                    **options(dense), **({"where": where[r], "weights": weights[r]}
                                         if name == "every" else {}))) for r in rows])
                check("shard_map_options", close(got, want, 1e-13, 1e-14),
                      f"{tag}: {got} != {want}")


def shard_map_accuracy() -> None:
    """float32 confident rows (loss ~1e-9, far below eps): a few eps relative, like NumPy."""
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    import xent

    mesh = _mesh()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    s = rng.integers(0, 64, 8)
    x[np.arange(8), s] = 24.0  # the right class leads by ~20: loss ~1e-9
    X, L = P("data", "model"), P("data")
    xs, ss = _placed(mesh, (x, X), (s, L))
    f = jax.jit(jax.shard_map(lambda s, x: xent.sparse_softmax_cross_entropy_with_logits(
        labels=s, logits=x, axis_name="model"), mesh=mesh, in_specs=(L, X), out_specs=L))
    got = np.asarray(f(ss, xs), np.float64)
    others = np.arange(64) != s[:, None]  # log1p of every class but the label, in float64
    exact = np.log1p(np.where(others, np.exp(x.astype(np.float64) - 24.0), 0).sum(1))
    rel = np.max(np.abs(got - exact) / exact) / np.finfo(np.float32).eps
    check("shard_map_accuracy", rel <= 8, f"relative error {rel:.3g} eps (float32) > 8")


def conformance_mesh() -> None:
    """The catalog's ``mesh`` mode on 8 devices (one case: masked classes, soft labels)."""
    import xent
    from xent.conformance import report, runner

    records = runner.evaluate("masked", "float32", xent.backends.get("jax"), "mesh").records
    bad = [r for r in records if r.passed is False]
    check("conformance_mesh", not bad, report.failures(bad) if bad else "")
    check("conformance_mesh", any(r.passed for r in records), "nothing measured")


def readme() -> None:
    """The README's example ("### JAX meshes"): GSPMD and shard_map give one loss."""
    import contextlib
    import io

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = re.search(r"^### JAX meshes\n(.*?)^##", text, re.S | re.M)
    found = section and re.search(r"```python\n(.*?)```", section.group(1), re.S)
    check("readme", found, "README: no python example under ### JAX meshes")
    if not found:
        return
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(found.group(1), "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    printed = out.getvalue().split()
    check("readme", len(printed) >= 2 and close(float(printed[-1]), float(printed[-2]), 1e-5),
          f"README example printed {printed}: the two losses differ")


if __name__ == "__main__":
    if FLAGS not in os.environ.get("XLA_FLAGS", ""):
        sys.exit(f"run with XLA_FLAGS={FLAGS}")
    main()
