"""The TensorFlow backend's fused option paths (``_tensorflow_fused``) against the generic
composition of ``xent._options`` on the same backend: values and gradients on random inputs
with NaN rows, excluded classes, ignored NaN rows, 16-bit dtypes and a class axis that is not
last, in eager, ``tf.function`` and TF1 graphs; unknown shapes; TF's transforms with
options; and the tiny-input host path (``_tensorflow_small``)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from conftest import requested_backends

if "tensorflow" not in requested_backends():
    pytest.skip("tensorflow is not in XENT_TEST_BACKENDS", allow_module_level=True)

import tensorflow as tf  # noqa: E402

import xent  # noqa: E402
from xent import _options  # noqa: E402
from xent.backends import _tensorflow_small as small  # noqa: E402

TF = xent.backends.get("tensorflow")
IGNORE = -100
RTOL = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 2e-5, "float64": 1e-12}
#: option sets: every option alone, and combinations
OPTION_SETS = {
    "ignore": dict(ignore_index=IGNORE),
    "smoothing": dict(label_smoothing=0.2),
    "class_weights": dict(class_weights=True),
    "weights": dict(weights=True),
    "where": dict(where=True),
    "where_smoothing": dict(where=True, label_smoothing=0.3),
    "class_weights_smoothing": dict(class_weights=True, label_smoothing=0.1),
    "all": dict(where=True, label_smoothing=0.25, class_weights=True, weights=True,
                ignore_index=IGNORE),
}


class Problem:
    """Random logits ``[rows, C]`` (or rank 3, class axis 1) with a NaN row, a kept ``-inf``
    logit away from the labels, NaN at excluded classes, ignored rows (one of them NaN)."""

    def __init__(self, options: dict[str, Any], rank3: bool = False, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        shape, self.axis = ((3, 6, 4), 1) if rank3 else ((7, 6), 1)
        classes = shape[self.axis]
        x = rng.normal(size=shape) * 2
        rows = np.moveaxis(x, self.axis, -1)  # a view: writes go to x
        self.index = rng.integers(0, classes, rows.shape[:-1])
        flat_rows, flat_index = rows.reshape(-1, classes), self.index.reshape(-1)
        flat_rows[1] = np.nan  # a NaN row
        flat_rows[2, (flat_index[2] + 1) % classes] = -np.inf  # a kept -inf logit
        self.options: dict[str, Any] = {}
        if options.get("where"):
            mask = rng.random(shape) > 0.3
            kept = np.moveaxis(mask, self.axis, -1).reshape(-1, classes)
            kept[np.arange(len(kept)), flat_index] = rng.random(len(kept)) > 0.2
            kept[2, (flat_index[2] + 1) % classes] = True  # the -inf logit stays in
            kept[:, (flat_index + 3) % classes] = True  # every row keeps a class
            flat_rows[~kept] = np.nan  # never read
            mask = np.moveaxis(kept.reshape(rows.shape), -1, self.axis)
            self.options["where"] = mask
        if "ignore_index" in options:
            flat_index[[3, 5]] = IGNORE
            flat_rows[3] = np.nan  # an ignored row is never read
            self.options["ignore_index"] = IGNORE
        if options.get("class_weights"):
            self.options["class_weights"] = rng.uniform(0.5, 2.0, classes)
        if options.get("weights"):
            loss_shape = rows.shape[:-1]
            self.options["weights"] = rng.uniform(0.0, 2.0, loss_shape[-1:])  # broadcast
        if "label_smoothing" in options:
            self.options["label_smoothing"] = options["label_smoothing"]
        self.x = x
        self.soft = np.moveaxis(rng.dirichlet(np.ones(classes), rows.shape[:-1]), -1, self.axis)
        if "where" in self.options:
            self.soft[~self.options["where"]] = np.nan  # never read either


def _options_of(problem: Problem, dtype: str, sparse: bool, logits: Any) -> _options.Options:
    """The validated options as the API builds them, with tensors made inside the caller's
    graph (a TF1 graph needs its own constants)."""
    o = problem.options

    def cast(a: Any) -> Any:
        return None if a is None else tf.constant(a, tf.as_dtype(dtype))
    smoothing = float(o.get("label_smoothing", 0.0))
    return _options.Options(
        weights=cast(o.get("weights")), class_weights=cast(o.get("class_weights")),
        label_smoothing=smoothing, smooths=smoothing != 0.0,
        where=None if "where" not in o else tf.constant(o["where"]),
        ignore_index=o.get("ignore_index") if sparse else None,
        num_classes=logits.shape[problem.axis])


def _loss(problem: Problem, dtype: str, sparse: bool, fused: bool) -> Any:
    def loss(labels: Any, logits: Any) -> Any:
        opt = _options_of(problem, dtype, sparse, logits)
        if sparse:
            if fused:
                return TF.sparse_softmax_cross_entropy_with_options(labels, logits,
                                                                    problem.axis, opt)
            return _options.sparse_rows(TF, labels, logits, problem.axis, opt)
        if fused:
            return TF.softmax_cross_entropy_with_options(labels, logits, problem.axis, opt)
        return _options.dense_rows(TF, labels, logits, problem.axis, opt)

    return loss


def _close(got: Any, want: Any, dtype: str, what: str) -> None:
    got, want = (None if a is None else np.asarray(a, np.float64) for a in (got, want))
    if want is None:
        assert got is None, what
        return
    rtol = RTOL[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True, err_msg=what)


def _compare(mode: str, problem: Problem, dtype: str, sparse: bool) -> None:
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    labels = problem.index if sparse else problem.soft.astype(np_dtype)
    logits = problem.x.astype(np_dtype)
    fused = TF.value_and_grad(mode, _loss(problem, dtype, sparse, True), labels, logits)
    generic = TF.value_and_grad(mode, _loss(problem, dtype, sparse, False), labels, logits)
    for name, got, want in zip(("value", "dlabels", "dlogits"), fused, generic):
        _close(got, want, dtype, f"{mode} {name}")


# -- fused == generic ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", TF.modes)
@pytest.mark.parametrize("name", OPTION_SETS)
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_fused_equals_the_generic_composition(mode: str, name: str, sparse: bool) -> None:
    options = OPTION_SETS[name]
    if not sparse and "ignore_index" in options:
        options = {k: v for k, v in options.items() if k != "ignore_index"}
    _compare(mode, Problem(options), "float32", sparse)


@pytest.mark.parametrize("mode", TF.modes)
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_rank3_class_axis_1(mode: str, sparse: bool) -> None:
    options = dict(OPTION_SETS["all"])
    if not sparse:
        del options["ignore_index"]
    _compare(mode, Problem(options, rank3=True, seed=1), "float32", sparse)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_other_dtypes(dtype: str, sparse: bool) -> None:
    options = dict(OPTION_SETS["all"])
    if not sparse:
        del options["ignore_index"]
    _compare("eager", Problem(options, seed=2), dtype, sparse)


@pytest.mark.parametrize("mode", TF.modes)
def test_ignored_nan_rows_and_excluded_classes_get_gradient_0(mode: str) -> None:
    problem = Problem(OPTION_SETS["all"], seed=3)
    value, _, dx = TF.value_and_grad(mode, _loss(problem, "float32", True, True),
                                     problem.index, problem.x.astype(np.float32))
    assert value[3] == 0 and value[5] == 0
    assert (dx[3] == 0).all() and (dx[5] == 0).all()
    assert (dx[~problem.options["where"]] == 0).all()
    assert np.isnan(value[1]) and value[2] == np.inf  # a NaN row; a kept -inf, smoothed
    assert np.isfinite(np.delete(value, [1, 2])).all() and np.isfinite(np.delete(dx, 1, 0)).all()


def test_a_zero_class_weight_at_a_minus_inf_label_adds_0_as_in_dense() -> None:
    x = np.array([[-np.inf, 0.5, 1.0], [0.2, 0.1, -0.3]], np.float32)
    labels, weights = np.array([0, 2]), np.array([0.0, 1.0, 2.0], np.float32)
    for smoothing in (0.0, 0.2):
        got = xent.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(labels), logits=tf.constant(x), class_weights=weights,
            label_smoothing=smoothing).numpy()
        dense = xent.softmax_cross_entropy_with_logits(
            labels=np.eye(3, dtype=np.float32)[labels], logits=tf.constant(x),
            class_weights=weights, label_smoothing=smoothing).numpy()
        np.testing.assert_allclose(got, dense, rtol=1e-6)
        assert np.isfinite(got).all()


# -- shapes unknown while tracing ---------------------------------------------------------
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_unknown_dimensions_in_a_function(sparse: bool) -> None:
    options = dict(OPTION_SETS["all"])
    if not sparse:
        del options["ignore_index"]
    problem = Problem(options, seed=4)
    labels = problem.index if sparse else problem.soft.astype(np.float32)
    o = problem.options

    def call(y: Any, x: Any, where: Any, cw: Any, w: Any) -> Any:
        extra = dict(ignore_index=IGNORE) if sparse else {}
        fn = (xent.sparse_softmax_cross_entropy_with_logits if sparse
              else xent.softmax_cross_entropy_with_logits)
        return fn(labels=y, logits=x, where=where, class_weights=cw, weights=w,
                  label_smoothing=o["label_smoothing"], **extra)

    args = [labels, problem.x.astype(np.float32), o["where"],
            o["class_weights"].astype(np.float32), o["weights"].astype(np.float32)]
    signature = [tf.TensorSpec([None] * np.ndim(a), tf.as_dtype(np.asarray(a).dtype))
                 for a in args]
    traced = tf.function(call, input_signature=signature)
    for ranked in (True, False):  # unknown dimensions; then an unknown rank (generic path)
        if not ranked:
            signature = [tf.TensorSpec(None, s.dtype) for s in signature]
            traced = tf.function(call, input_signature=signature)
        got = traced(*[tf.constant(a) for a in args]).numpy()
        want = call(*[tf.constant(a) for a in args]).numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, equal_nan=True)


# -- transforms with options --------------------------------------------------------------
def _all_options_sparse(y: Any, x: Any) -> Any:
    problem = _TRANSFORM_PROBLEM
    o = problem.options
    return xent.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=x, ignore_index=IGNORE, label_smoothing=o["label_smoothing"],
        class_weights=o["class_weights"], weights=o["weights"], where=o["where"])


def _all_options_generic(y: Any, x: Any) -> Any:
    problem = _TRANSFORM_PROBLEM
    opt = _options_of(problem, "float64", True, x)
    return _options.sparse_rows(TF, y, x, problem.axis, opt)


_TRANSFORM_PROBLEM = Problem(OPTION_SETS["all"], seed=5)


def _finite_problem() -> tuple[tf.Tensor, tf.Tensor]:
    p = _TRANSFORM_PROBLEM
    x = np.where(np.isnan(p.x) | np.isinf(p.x), 0.3, p.x)  # second derivatives need finite
    return tf.constant(p.index), tf.constant(x)


def _hessian(f: Any, y: tf.Tensor, x: tf.Tensor) -> tuple[Any, Any]:
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            total = tf.reduce_sum(f(y, x))
        g = inner.gradient(total, x)
    return g, outer.jacobian(g, x, experimental_use_pfor=False)


def _jvp(f: Any, y: tf.Tensor, x: tf.Tensor) -> tuple[Any, Any]:
    with tf.autodiff.ForwardAccumulator(x, tf.ones_like(x) * 0.5) as acc:
        out = f(y, x)
    return out, acc.jvp(out)


@pytest.mark.parametrize("transform", ["hessian", "jvp", "jit_compile", "vectorized_map"])
def test_transforms_with_options_match_the_generic_composition(transform: str) -> None:
    y, x = _finite_problem()

    def run(f: Any) -> list[np.ndarray]:
        if transform == "hessian":
            out = _hessian(f, y, x)
        elif transform == "jvp":
            out = _jvp(f, y, x)
        elif transform == "jit_compile":
            def grad(y: Any, x: Any) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    total = tf.reduce_sum(f(y, x))
                return total, tape.gradient(total, x), _jvp(f, y, x)[1]
            out = tf.function(grad, jit_compile=True)(y, x)
        else:  # over a batch of two copies of the problem
            def example(args: Any) -> Any:
                yi, xi = args
                with tf.GradientTape() as tape:
                    tape.watch(xi)
                    total = tf.reduce_sum(f(yi, xi))
                return total, tape.gradient(total, xi)
            out = tf.function(lambda y, x: tf.vectorized_map(
                example, (tf.stack([y, y]), tf.stack([x, x])),
                fallback_to_while_loop=False))(y, x)
        return [np.asarray(t) for t in tf.nest.flatten(out)]

    for got, want in zip(run(_all_options_sparse), run(_all_options_generic)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_vectorized_map_of_an_empty_batch_with_every_option(sparse: bool) -> None:
    """``tf.vectorized_map`` of a batch of two empty batches: two empty losses and
    gradients (TF's ``matvec`` rule fails on the 0 rows; the class-weighted sums are a
    ``matmul`` reshaped while tracing)."""
    classes = 6
    options = dict(where=np.arange(classes) != 1, weights=np.zeros(0), label_smoothing=0.25,
                   class_weights=np.linspace(0.5, 2.0, classes))
    call = (xent.sparse_softmax_cross_entropy_with_logits if sparse
            else xent.softmax_cross_entropy_with_logits)

    def example(args: Any) -> Any:
        labels, x = args
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = call(labels=labels, logits=x, **options)
        return loss, tape.gradient(loss, x)

    x = tf.zeros((2, 0, classes), tf.float64)
    labels = tf.zeros((2, 0), tf.int64) if sparse else x
    loss, grad = tf.function(lambda y, x: tf.vectorized_map(
        example, (y, x), fallback_to_while_loop=False))(labels, x)
    assert loss.shape == (2, 0) and grad.shape == (2, 0, classes)


# -- tiny inputs on the host ----------------------------------------------------------------
def test_tiny_eager_losses_run_on_the_host_and_equal_the_tf_ops() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    x[1, 0] = -np.inf
    labels = np.array([1, 2])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    xt = tf.constant(x)
    assert small.fits(xt, 1)
    host = [xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=xt),
            xent.softmax_cross_entropy_with_logits(labels=one_hot, logits=xt)]
    with tf.GradientTape():  # a tape: the TF ops (a gradient may be asked for)
        assert not small.fits(xt, 1)
        ops = [xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=xt),
               xent.softmax_cross_entropy_with_logits(labels=one_hot, logits=xt)]
    for h, o in zip(host, ops):
        assert isinstance(h, tf.Tensor) and h.dtype == tf.float32 and h.shape == (2,)
        assert "CPU" in h.device
        np.testing.assert_allclose(h.numpy(), o.numpy(), rtol=2e-7)


def test_tiny_path_conditions() -> None:
    x = tf.constant(np.zeros((2, 3), np.float32))
    assert small.fits(x, 1) and not small.fits(x, 0)
    assert not small.fits(tf.cast(x, tf.float16), 1)  # 16-bit: computed in float32 by TF
    assert not small.fits(tf.zeros((8, 9)), 1)  # more than MAX_ELEMENTS
    assert not small.fits(tf.Variable(x), 1)  # variables are read by TF ops
    with tf.autodiff.ForwardAccumulator(x, tf.ones_like(x)):
        assert not small.fits(x, 1)

    @tf.function
    def traced(y: Any) -> Any:
        assert not small.fits(x, 1)  # tracing: a captured eager tensor
        return y

    traced(x)


@pytest.mark.parametrize("rows, classes", list(itertools.product((1, 2, 5), (1, 3, 12))))
def test_tiny_values_equal_the_numpy_reference(rows: int, classes: int) -> None:
    rng = np.random.default_rng(rows * classes)
    x = (rng.normal(size=(rows, classes)) * 30).astype(np.float32)
    labels = rng.integers(0, classes, rows)
    got = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.constant(x))
    want = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-7)


# -- eager masks: one pass over the logits as given ---------------------------------------
def _excluded_maxima_problem(options: dict[str, Any], seed: int) -> Problem:
    """:class:`Problem` without NaN (which sends a batch to the masked logits), with rows
    whose maximum is excluded: a little above the kept ones (row 4) and far above (row 6,
    its label far below them and its soft labels on it: no cancellation)."""
    problem = Problem(options, seed=seed)
    rng = np.random.default_rng(seed)
    x = problem.x
    x[np.isnan(x)] = rng.normal(size=int(np.isnan(x).sum()))
    where = problem.options["where"]
    for row, above in ((4, 0.5), (6, 8.0)):
        label = problem.index[row] % x.shape[1]
        top = (label + 2) % x.shape[1]
        where[row, [top, label]] = False, True
        x[row, top] = x[row][where[row]].max() + above
        if above > 1:
            x[row, label] = x[row, top] - 20.0
            problem.soft[row] = np.eye(x.shape[1])[label]
    return problem


def _one_mask_for_every_row(problem: Problem) -> Problem:
    """``problem`` with one ``[C]`` mask for every row (a vocabulary's), excluding two
    classes: the maximum of rows 0 and 4 a little above the kept classes, of row 6 far above
    (labels below the kept classes: no cancellation), elsewhere below them; NaN labels
    there (never read)."""
    x, classes = problem.x, problem.x.shape[1]
    where = np.ones(classes, bool)
    labels = problem.index.reshape(-1) % classes
    busy = {(labels[2] + 1) % classes, *labels[[0, 4, 6]]}  # the kept -inf logit, labels
    top = [c for c in range(classes) if c not in busy][:2]
    where[top] = False
    finite = np.isfinite(x)
    for row in range(len(x)):
        x[row, top] = np.min(x[row][finite[row]]) - 1.0
    for row, excluded, above in ((0, top[0], 0.5), (4, top[0], 1.5), (6, top[1], 8.0)):
        x[row, labels[row]] = np.min(x[row][where]) - (1.0 if above < 2 else 12.0)
        x[row, excluded] = np.max(x[row][where]) + above
    soft = np.random.default_rng(5).dirichlet(np.ones(classes), len(x))
    soft[6] = np.eye(classes)[labels[6]]
    soft[:, ~where] = np.nan
    problem.soft = soft
    problem.options["where"] = where
    return problem


@pytest.mark.parametrize("mask", ["full", "[C]"])
@pytest.mark.parametrize("name", ["where", "where_smoothing", "all"])
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_eager_masks_take_one_pass_over_the_logits_as_given(
        name: str, sparse: bool, mask: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager, with or without a tape: no masked copy of the logits (``tf.where``), the
    exponentials weighted by the mask instead (``shifted``'s ``kept``; one ``[C]`` mask for
    every row weighs the sums by matrix-vector products), also where a row's maximum is
    excluded; values and gradients equal the generic composition's."""
    from xent.backends import _tensorflow_fused as fused

    held: list[bool] = []
    check = fused._one_pass_holds
    monkeypatch.setattr(fused, "_one_pass_holds", lambda *a, **k: held.append(check(*a, **k))
                        or held[-1])
    options = dict(OPTION_SETS[name])
    if not sparse:
        options.pop("ignore_index", None)
    problem = _excluded_maxima_problem(options, seed=4)
    if mask == "[C]":
        problem = _one_mask_for_every_row(problem)
    _compare("eager", problem, "float64", sparse)
    assert held == [True], held  # the fused call (value and gradients) in one pass
    held.clear()
    labels = problem.index if sparse else problem.soft
    call = (xent.sparse_softmax_cross_entropy_with_logits if sparse
            else xent.softmax_cross_entropy_with_logits)
    untaped = call(labels=labels, logits=tf.constant(problem.x), **problem.options)
    assert held == [True]
    _close(untaped, _loss(problem, "float64", sparse, False)(labels, tf.constant(problem.x)),
           "float64", "untaped")


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_eager_masks_mask_the_logits_where_one_pass_would_cancel(
        sparse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """An excluded maximum far above a confident kept label (``log_z < 0``, the loss far
    below ``|log_z|``): the batch runs on the masked logits, relatively accurate."""
    from exact import loss_rows, relative_error_in_eps

    from xent.backends import _tensorflow_fused as fused

    held: list[bool] = []
    check = fused._one_pass_holds
    monkeypatch.setattr(fused, "_one_pass_holds", lambda *a, **k: held.append(check(*a, **k))
                        or held[-1])
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 40))
    x[:, 5] = x.max(axis=1) + 20.0  # the label, kept and confident: loss ~ 1e-9
    x[:, 7] = x[:, 5] + 3.0  # excluded, above it
    where = np.ones(x.shape, bool)
    where[:, 7] = False
    labels = np.full(3, 5)
    exact = loss_rows(np.eye(39)[labels], np.delete(x, 7, axis=1))
    if sparse:
        got = xent.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.constant(x), where=where)
    else:
        got = xent.softmax_cross_entropy_with_logits(
            labels=np.eye(40)[labels], logits=tf.constant(x), where=where)
    assert held == [False]
    assert relative_error_in_eps(got.numpy(), exact, np.float64) < 8
