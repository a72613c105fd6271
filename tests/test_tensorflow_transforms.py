"""The TensorFlow backend under TensorFlow's transforms (DESIGN section 8).

Every transform is applied to the four functions (dense, sparse, log_softmax, softmax) and
compared with the same transform of TensorFlow's own op (``tf.nn.softmax_cross_entropy_with_
logits``, its sparse twin, ``tf.nn.log_softmax``, ``tf.nn.softmax``) on finite inputs, and
with exact values (float64 formulas of softmax ``p`` and ``lse``) on inputs with masked
classes, where TF's ops give NaN. Also: unknown ranks and dimensions with the checks that
wait for the graph to run, a SavedModel reloaded in a fresh process, and the backend's
``jvp`` conformance hook in every mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import requested_backends

if "tensorflow" not in requested_backends():
    pytest.skip("tensorflow is not in XENT_TEST_BACKENDS", allow_module_level=True)

import tensorflow as tf  # noqa: E402

import xent  # noqa: E402
from xent.backends import _tensorflow_transforms  # noqa: E402

TF = xent.backends.get("tensorflow")
INF = float("inf")
NAMES = ("dense", "sparse", "log_softmax", "softmax")
RNG = np.random.default_rng(8)
X = RNG.normal(size=(3, 4))
MASK = np.zeros((3, 4), bool)
MASK[0, 3] = MASK[1, 0] = MASK[2, 1] = MASK[2, 2] = True  # never at a label
K = np.array([1, 2, 0])
Y = RNG.dirichlet(np.ones(4), 3) * ~MASK  # soft labels, 0 at the masked classes,
Y /= Y.sum(1, keepdims=True)  # normalised (TF's kernel assumes it in its gradient)
DX, DY = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4)) * ~MASK
W_ROWS, W_CLASSES = RNG.normal(size=3), RNG.normal(size=(3, 4))

Fn = Callable[[Any, Any], Any]
OURS: dict[str, Fn] = {
    "dense": lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x),
    "sparse": lambda y, x: xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
    "log_softmax": lambda y, x: xent.log_softmax(x),
    "softmax": lambda y, x: xent.softmax(x),
}
NATIVE: dict[str, Fn] = {
    "dense": lambda y, x: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x),
    "sparse": lambda y, x: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
    "log_softmax": lambda y, x: tf.nn.log_softmax(x),
    "softmax": lambda y, x: tf.nn.softmax(x),
}


class Problem:
    """One function on one input: labels, logits, output weights and tangents (NumPy)."""

    def __init__(self, name: str, masked: bool) -> None:
        self.name = name
        self.x = np.where(MASK, -INF, X) if masked else X
        self.y = K if name == "sparse" else Y
        self.w = W_ROWS if name in ("dense", "sparse") else W_CLASSES
        self.dense = name == "dense"  # the only function with a label gradient / tangent

    def tensors(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return tf.constant(self.y), tf.constant(self.x), tf.constant(self.w)


# -- exact values (float64 formulas; p = 0 at a masked class) --------------------------------
def _p_lse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(-1, keepdims=True), m + np.log(e.sum(-1, keepdims=True))


def _labels(pr: Problem) -> np.ndarray:
    return np.eye(4)[pr.y] if pr.name == "sparse" else pr.y


def exact_value(pr: Problem) -> np.ndarray:
    p, lse = _p_lse(pr.x)  # the np.where below drops the inf * 0 of a masked class
    if pr.name == "softmax":
        return p
    if pr.name == "log_softmax":
        return pr.x - lse
    y = _labels(pr)
    with np.errstate(invalid="ignore"):
        return np.where(y == 0, 0.0, y * (lse - pr.x)).sum(-1)


def exact_grad(pr: Problem, w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(d/dlogits, d/dlabels or None) of ``sum(w * f)``."""
    p, lse = _p_lse(pr.x)
    if pr.name == "softmax":
        return p * (w - (w * p).sum(-1, keepdims=True)), None
    if pr.name == "log_softmax":
        return w - w.sum(-1, keepdims=True) * p, None
    y = _labels(pr)
    dx = w[:, None] * (p * y.sum(-1, keepdims=True) - y)
    return dx, (w[:, None] * (lse - pr.x) if pr.dense else None)  # +-inf at a masked class


def exact_jvp(pr: Problem) -> np.ndarray:
    p, lse = _p_lse(pr.x)
    pdx = (p * DX).sum(-1, keepdims=True)
    if pr.name == "softmax":
        return p * (DX - pdx)
    if pr.name == "log_softmax":
        return DX - pdx
    y = _labels(pr)
    out = ((p * y.sum(-1, keepdims=True) - y) * DX).sum(-1)
    if not pr.dense:
        return out
    with np.errstate(invalid="ignore"):  # DY is 0 at the masked classes: no inf * 0 there
        return out + np.where(DY == 0, 0.0, (lse - pr.x) * DY).sum(-1)


def exact_hessian(pr: Problem) -> np.ndarray:
    """d^2 sum(w * f) / dlogits^2, shape (3, 4, 3, 4): one block per row."""
    p, _ = _p_lse(pr.x)
    w = pr.w
    cov = np.einsum("rj,jk->rjk", p, np.eye(4)) - np.einsum("rj,rk->rjk", p, p)
    if pr.name == "softmax":
        wp = (w * p).sum(-1)[:, None, None]
        blocks = (np.einsum("rj,jk->rjk", p * w, np.eye(4)) - wp * np.einsum("rj,jk->rjk", p,
                  np.eye(4)) - np.einsum("rj,rk->rjk", p * w, p) - np.einsum("rj,rk->rjk", p,
                  p * w) + 2 * wp * np.einsum("rj,rk->rjk", p, p))
    elif pr.name == "log_softmax":
        blocks = -w.sum(-1)[:, None, None] * cov
    else:
        blocks = (w * _labels(pr).sum(-1))[:, None, None] * cov
    return np.einsum("rjk,rs->rjsk", blocks, np.eye(3))


def exact_jacobian(pr: Problem) -> np.ndarray:
    """d f / dlogits, shape f.shape + (3, 4)."""
    shape = exact_value(pr).shape
    size = int(np.prod(shape))
    with np.errstate(invalid="ignore"):  # the label gradient (unused) has 0 * inf
        rows = [exact_grad(pr, np.eye(size)[i].reshape(shape))[0] for i in range(size)]
    return np.array(rows).reshape(shape + (3, 4))


EXACT: dict[str, Callable[[Problem], Any]] = {
    "value": exact_value,
    "dx": lambda pr: exact_grad(pr, pr.w)[0],
    "dy": lambda pr: exact_grad(pr, pr.w)[1],
    "jvp": exact_jvp,
    "hessian": exact_hessian,
    "hvp": lambda pr: np.einsum("rjsk,sk->rj", exact_hessian(pr), DX),
    "jacobian": exact_jacobian,
}


# -- the transforms: each returns {quantity: NumPy array or None} ---------------------------
def _tape_grad(f: Fn, y: tf.Tensor, x: tf.Tensor, w: tf.Tensor, dense: bool) -> tuple[Any, ...]:
    with tf.GradientTape() as tape:
        tape.watch(x)
        if dense:
            tape.watch(y)
        out = f(y, x)
        total = tf.reduce_sum(w * out)
    dy, dx = tape.gradient(total, [y, x]) if dense else (None, tape.gradient(total, x))
    return out, dx, dy


def _jvp(f: Fn, y: tf.Tensor, x: tf.Tensor, dense: bool) -> tuple[Any, Any]:
    primals, tangents = ([y, x], [tf.constant(DY), tf.constant(DX)]) if dense else (
        [x], [tf.constant(DX)])
    with tf.autodiff.ForwardAccumulator(primals, tangents) as acc:
        out = f(y, x)
    return out, acc.jvp(out)


def _hessian(f: Fn, y: tf.Tensor, x: tf.Tensor, w: tf.Tensor, pfor: bool) -> tuple[Any, Any]:
    with tf.GradientTape(persistent=not pfor) as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            total = tf.reduce_sum(w * f(y, x))
        g = inner.gradient(total, x)
    return g, outer.jacobian(g, x, experimental_use_pfor=pfor)


# Each transform takes a function and problems of equal shapes and dtypes (finite and
# masked), and traces or compiles once for all of them.
Results = list[dict[str, Any]]


def gradient_tape(f: Fn, problems: list[Problem]) -> Results:
    results = []
    for pr in problems:
        out, dx, dy = _tape_grad(f, *pr.tensors(), pr.dense)
        results.append({"value": out, "dx": dx, "dy": dy})
    return results


def nested_tapes(f: Fn, problems: list[Problem]) -> Results:
    results = []
    for pr in problems:
        g, h = _hessian(f, *pr.tensors(), pfor=False)  # eager, no pfor: tapes only
        results.append({"dx": g, "hessian": h})
    return results


def hessian_in_function(f: Fn, problems: list[Problem]) -> Results:
    traced = tf.function(lambda y, x, w: _hessian(f, y, x, w, pfor=True))
    return [dict(zip(("dx", "hessian"), traced(*pr.tensors()))) for pr in problems]


def forward_accumulator(f: Fn, problems: list[Problem]) -> Results:
    return [dict(zip(("value", "jvp"), _jvp(f, *pr.tensors()[:2], pr.dense)))
            for pr in problems]


def forward_over_backward(f: Fn, problems: list[Problem]) -> Results:
    @tf.function
    def hvp(y: tf.Tensor, x: tf.Tensor, w: tf.Tensor) -> Any:
        with tf.autodiff.ForwardAccumulator(x, tf.constant(DX)) as acc:
            _, dx, _ = _tape_grad(f, y, x, w, False)
        return acc.jvp(dx)

    return [{"hvp": hvp(*pr.tensors())} for pr in problems]


def jit_compile(f: Fn, problems: list[Problem]) -> Results:
    dense = problems[0].dense

    @tf.function(jit_compile=True)
    def everything(y: tf.Tensor, x: tf.Tensor, w: tf.Tensor) -> Any:
        out, dx, dy = _tape_grad(f, y, x, w, dense)
        return out, dx, dy, _jvp(f, y, x, dense)[1]

    return [dict(zip(("value", "dx", "dy", "jvp"), everything(*pr.tensors())))
            for pr in problems]


def vectorized_map(f: Fn, problems: list[Problem]) -> Results:
    """Per example (a row: rank-1 logits, scalar sparse labels): value, gradient, JVP."""
    dense = problems[0].dense

    def example(args: Any) -> Any:
        y, x, w, dx, dy = args
        with tf.autodiff.ForwardAccumulator([y, x] if dense else [x],
                                            [dy, dx] if dense else [dx]) as acc:
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = f(y, x)
                total = tf.reduce_sum(w * out)
        return out, tape.gradient(total, x), acc.jvp(out)

    mapped = tf.function(lambda *args: tf.vectorized_map(example, args,
                                                         fallback_to_while_loop=False))
    return [dict(zip(("value", "dx", "jvp"),
                     mapped(*pr.tensors(), tf.constant(DX), tf.constant(DY))))
            for pr in problems]


def jacobian(f: Fn, problems: list[Problem]) -> Results:
    @tf.function
    def jac(y: tf.Tensor, x: tf.Tensor) -> Any:
        with tf.GradientTape() as tape:  # tape.jacobian vectorises the backward pass (pfor)
            tape.watch(x)
            out = f(y, x)
        return tape.jacobian(out, x)

    return [{"jacobian": jac(*pr.tensors()[:2])} for pr in problems]


def unknown_rank_graph(f: Fn, problems: list[Problem]) -> Results:
    """TF1: placeholders with no shape, tf.compat.v1.gradients, a Session."""
    dense = problems[0].dense
    with tf.Graph().as_default() as graph:
        y = tf.compat.v1.placeholder(tf.as_dtype(problems[0].y.dtype))
        x, w = tf.compat.v1.placeholder(tf.float64), tf.compat.v1.placeholder(tf.float64)
        out = f(y, x)
        assert out.shape.rank is None
        grads = tf.compat.v1.gradients(tf.reduce_sum(w * out), [y, x] if dense else [x])
        with tf.compat.v1.Session(graph=graph) as session:
            runs = [session.run([out, *grads], {y: pr.y, x: pr.x, w: pr.w}) for pr in problems]
    return [{"value": r[0], "dx": r[-1], "dy": r[1] if dense else None} for r in runs]


def _in_function_of(signature: list[tf.TensorSpec], f: Fn, problems: list[Problem]) -> Results:
    dense = problems[0].dense
    traced = tf.function(lambda y, x, w: _tape_grad(f, y, x, w, dense),
                         input_signature=signature)
    return [dict(zip(("value", "dx", "dy"), traced(*pr.tensors()))) for pr in problems]


def unknown_rank_function(f: Fn, problems: list[Problem]) -> Results:
    pr = problems[0]
    spec = [tf.TensorSpec(None, tf.as_dtype(pr.y.dtype)), tf.TensorSpec(None, tf.float64),
            tf.TensorSpec(None, tf.float64)]
    return _in_function_of(spec, f, problems)


def unknown_dims_function(f: Fn, problems: list[Problem]) -> Results:
    pr = problems[0]
    spec = [tf.TensorSpec([None] * pr.y.ndim, tf.as_dtype(pr.y.dtype)),
            tf.TensorSpec([None, None], tf.float64),
            tf.TensorSpec([None] * pr.w.ndim, tf.float64)]
    return _in_function_of(spec, f, problems)


TRANSFORMS = [gradient_tape, nested_tapes, hessian_in_function, forward_accumulator,
              forward_over_backward, jit_compile, vectorized_map, jacobian, unknown_rank_graph,
              unknown_rank_function, unknown_dims_function]


def _numpy(results: dict[str, Any]) -> dict[str, Any]:
    return {k: None if v is None else np.asarray(v) for k, v in results.items()}


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_transform_matches_tf_and_the_exact_values(name: str, transform: Any) -> None:
    finite, masked = Problem(name, masked=False), Problem(name, masked=True)
    ours, ours_masked = map(_numpy, transform(OURS[name], [finite, masked]))
    (native,) = map(_numpy, transform(NATIVE[name], [finite]))
    assert ours.keys() == native.keys()
    for quantity, got in ours.items():
        if native[quantity] is None:  # no label gradient: integer labels, logits only
            assert got is None, quantity
            continue
        assert got is not None, quantity
        np.testing.assert_allclose(got, native[quantity], rtol=1e-9, atol=1e-12,
                                   err_msg=f"{quantity} vs TensorFlow's own op")
    for quantity, got in ours_masked.items():
        want = EXACT[quantity](masked)
        if want is None:
            continue
        assert got is not None, quantity
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{quantity} on masked classes vs exact")


# -- SavedModel -----------------------------------------------------------------------------
class Losses(tf.Module):
    """The four functions in one ``tf.function`` of unknown-rank inputs."""

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float64),
                                  tf.TensorSpec(None, tf.int64), tf.TensorSpec(None, tf.float64)])
    def __call__(self, y: tf.Tensor, k: tf.Tensor, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {name: OURS[name](k if name == "sparse" else y, x) for name in NAMES}


# A fresh process without xent: load, call, differentiate (one tape for every function: the
# first gradient of a loaded function builds its backward function, seconds).
_LOAD_AND_DIFFERENTIATE = """
import json, sys
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2])
y, k = tf.constant(data["y"]), tf.constant(data["k"])
names = ("dense", "sparse", "log_softmax", "softmax")
weights = {n: tf.constant(data["w_rows" if n in ("dense", "sparse") else "w_classes"])
           for n in names}
results = {}
for masked in (False, True):
    x = tf.constant(data["masked" if masked else "x"])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, y])
        values = model(y, k, x)
        totals = {n: tf.reduce_sum(weights[n] * values[n]) for n in names}
    for n in names:
        grad_y, grad_x = tape.gradient(totals[n], [y, x])
        got = {"value": values[n], "dx": grad_x} | ({"dy": grad_y} if n == "dense" else {})
        results[f"{n}-{masked}"] = {q: v.numpy().tolist() for q, v in got.items()}
assert "xent" not in sys.modules, "the SavedModel needs xent to run"
print(json.dumps(results))
"""


def test_saved_model_reloaded_in_a_fresh_process_is_called_and_differentiated(
    tmp_path: Path,
) -> None:
    tf.saved_model.save(Losses(), str(tmp_path / "losses"))
    np.savez(tmp_path / "inputs.npz", y=Y, k=K, x=X, masked=np.where(MASK, -INF, X),
             w_rows=W_ROWS, w_classes=W_CLASSES)
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_DIFFERENTIATE, str(tmp_path / "losses"),
         str(tmp_path / "inputs.npz")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for name in NAMES:
        finite, masked = Problem(name, masked=False), Problem(name, masked=True)
        (native,) = map(_numpy, gradient_tape(NATIVE[name], [finite]))
        for quantity, got in loaded[f"{name}-False"].items():
            np.testing.assert_allclose(got, native[quantity], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {quantity} vs TensorFlow's own op")
        for quantity, got in loaded[f"{name}-True"].items():
            np.testing.assert_allclose(got, EXACT[quantity](masked), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {quantity} on masked classes vs exact")


# -- checks when the graph runs -------------------------------------------------------------
# (logits, labels or None, function, axis): input the static checks reject with ValueError
BAD_INPUT = {
    "scalar logits": (np.float64(1.5), None, "softmax", -1),
    "axis out of range": (X, None, "softmax", 2),
    "negative axis out of range": (X, None, "log_softmax", -3),
    "empty class axis": (np.zeros((3, 0)), None, "log_softmax", 1),
    "empty class axis, sparse": (np.zeros((3, 0)), np.zeros(3, np.int64), "sparse", -1),
    "dense labels of another shape": (X, Y[:2], "dense", -1),
    "dense labels of another rank": (X, Y[0], "dense", -1),
    "sparse labels of another shape": (X, K[:2], "sparse", -1),
    "sparse labels for another axis": (X, K, "sparse", 0),
}


def _call(name: str, labels: Any, logits: Any, axis: int) -> Any:
    if name in ("softmax", "log_softmax"):
        return getattr(xent, name)(logits, axis)
    fn = (xent.softmax_cross_entropy_with_logits if name == "dense"
          else xent.sparse_softmax_cross_entropy_with_logits)
    return fn(labels=labels, logits=logits, axis=axis)


def _static_message(logits: Any, labels: Any, name: str, axis: int) -> str:
    with pytest.raises(ValueError) as raised:
        _call(name, None if labels is None else tf.constant(labels), tf.constant(logits), axis)
    return str(raised.value)


@pytest.mark.parametrize("case", BAD_INPUT)
def test_what_a_traced_shape_hides_is_checked_when_the_graph_runs(case: str) -> None:
    logits, labels, name, axis = BAD_INPUT[case]
    message = _static_message(logits, labels, name, axis)
    assert message.split(":")[0] in ("logits", "axis", "labels")
    # TF1: placeholders of unknown rank, run in a Session
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float64)
        y = None if labels is None else tf.compat.v1.placeholder(tf.as_dtype(labels.dtype))
        out = _call(name, y, x, axis)
        with tf.compat.v1.Session(graph=graph) as session:
            feed = {x: logits} if y is None else {x: logits, y: labels}
            with pytest.raises(tf.errors.InvalidArgumentError) as raised:
                session.run(out, feed)
    assert message in raised.value.message
    # TF2: tf.function(input_signature=[tf.TensorSpec(None)])
    specs = [tf.TensorSpec(None, tf.float64)] + (
        [] if labels is None else [tf.TensorSpec(None, tf.as_dtype(labels.dtype))])
    traced = tf.function(lambda x, *y: _call(name, y[0] if y else None, x, axis),
                         input_signature=specs)
    args = [tf.constant(logits)] + ([] if labels is None else [tf.constant(labels)])
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        traced(*args)
    assert message in raised.value.message


@pytest.mark.parametrize("case", ["empty class axis", "dense labels of another shape",
                                  "sparse labels of another shape"])
def test_unknown_dimensions_of_a_known_rank_are_checked_when_the_graph_runs(case: str) -> None:
    logits, labels, name, axis = BAD_INPUT[case]
    message = _static_message(logits, labels, name, axis)
    specs = [tf.TensorSpec([None] * logits.ndim, tf.float64)] + (
        [] if labels is None else [tf.TensorSpec([None] * labels.ndim,
                                                 tf.as_dtype(labels.dtype))])
    traced = tf.function(lambda x, *y: _call(name, y[0] if y else None, x, axis),
                         input_signature=specs)
    args = [tf.constant(logits)] + ([] if labels is None else [tf.constant(labels)])
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        traced(*args)
    assert message in raised.value.message


def test_run_time_checks_add_nothing_where_the_shapes_are_known() -> None:
    def check_ops(x: tf.Tensor) -> list[str]:
        graph = tf.function(lambda x: _call("sparse", K, x, -1)).get_concrete_function(x).graph
        return [op.type for op in graph.get_operations() if op.type == "Assert"]

    assert check_ops(tf.constant(X)) == []
    assert check_ops(tf.TensorSpec([None, None], tf.float64)) == ["Assert"]


def test_out_of_range_sparse_labels_are_nan_with_an_unknown_rank() -> None:
    with tf.Graph().as_default() as graph:
        x, k = tf.compat.v1.placeholder(tf.float64), tf.compat.v1.placeholder(tf.int64)
        out = xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x)
        with tf.compat.v1.Session(graph=graph) as session:
            loss = session.run(out, {x: X, k: [1, 4, -1]})
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()


# -- the conformance hooks in the transform modes -------------------------------------------
JVP_CALLS: dict[str, tuple[Callable[..., Any], str]] = {  # as the conformance runner calls
    "softmax": (lambda x: xent.softmax(x, -1), "x"),
    "log_softmax": (lambda x: xent.log_softmax(x, -1), "x"),
    "dense": (lambda y, x: xent.softmax_cross_entropy_with_logits(labels=y, logits=x), "yx"),
    "sparse": (lambda y, x: xent.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
               "kx"),
}


@pytest.mark.parametrize("mode", TF.modes + TF.transform_modes)
def test_jvp_hook_in_every_mode_against_the_exact_values(mode: str) -> None:
    # every dtype in eager; a half precision in graph mode (its casts under the accumulator)
    dtypes = {"eager": ("float64", "float32", "float16", "bfloat16"),
              "graph": ("float64", "float16")}.get(mode, ("float64",))
    for dtype in dtypes:
        cast = TF.asarray(np.zeros(0), dtype=dtype).numpy().dtype.type
        rtol = {"float64": 1e-12, "float32": 1e-5, "float16": 3e-3, "bfloat16": 2e-2}[dtype]
        for name, (fn, arguments) in JVP_CALLS.items():
            pr = Problem(name, masked=True)
            args = {"x": (cast(pr.x),), "yx": (cast(Y), cast(pr.x)), "kx": (K, cast(pr.x))}
            tangents = {"x": (cast(DX),), "yx": (cast(DY), cast(DX)), "kx": (None, cast(DX))}
            value, jvp = TF.jvp(mode, fn, args[arguments], tangents[arguments])
            assert value.dtype == jvp.dtype == cast(0).dtype, (name, dtype)
            exact = Problem(name, masked=True)
            exact.x = args[arguments][-1].astype(np.float64)  # the rounded input
            np.testing.assert_allclose(value.astype(np.float64), exact_value(exact), rtol=rtol,
                                       atol=rtol, err_msg=f"{name} {dtype} value")
            np.testing.assert_allclose(jvp.astype(np.float64), exact_jvp(exact), rtol=rtol,
                                       atol=rtol * 4, err_msg=f"{name} {dtype} jvp")


def test_vectorized_map_mode_returns_one_entry_and_refuses_entries_that_differ() -> None:
    out = TF.run("vectorized_map", lambda x: xent.softmax(x), X)
    assert out.shape == X.shape
    with pytest.raises(AssertionError, match="entries"):
        TF.run("vectorized_map", lambda x: x + tf.random.uniform(tf.shape(x), dtype=x.dtype), X)
    batch = np.array([[1.0, np.nan, INF], [1.0 + 3e-16, np.nan, INF]])
    assert _tensorflow_transforms._entries_equal(batch)
    assert not _tensorflow_transforms._entries_equal(batch + [[0, 0, 0], [1e-9, 0, 0]])
    assert not _tensorflow_transforms._entries_equal(np.array([[1.0, INF], [1.0, -INF]]))
