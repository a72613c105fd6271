"""The conformance machinery itself: exact reference, metric, catalog, report and CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest

import xent.cli
from xent.conformance import cases, metric, report, runner
from xent.conformance.reference import exact

SEED_LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
SEED_LABELS = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_reference_reproduces_the_seed_example() -> None:
    ref = exact(SEED_LOGITS, SEED_LABELS, np.array([1, 2]), 1)
    np.testing.assert_allclose(ref["softmax"].hi, [[0.227863, 0.61939586, 0.15274114],
                                                   [0.49674623, 0.20196195, 0.30129182]],
                               atol=5e-9)
    np.testing.assert_allclose(ref["loss"].hi, [0.4790107, 1.19967598], atol=5e-9)
    np.testing.assert_array_equal(ref["sparse_loss"].hi, ref["loss"].hi)
    assert ref["loss"].hi.mean() == pytest.approx(0.83934333897877944, abs=1e-15)


def test_reference_is_exact_beyond_float64() -> None:
    x = np.array([[1e-3, 2.0, -3.5, 700.0]])
    ref = exact(x, np.array([[0.25, 0.25, 0.5, 0.0]]), None, 1)
    mp = mpmath.mp
    with mpmath.workdps(60):
        lse = mp.log(mp.fsum(mp.exp(mp.mpf(v)) for v in x[0]))
        loss = mp.fsum(mp.mpf(w) * (lse - mp.mpf(v)) for w, v in zip((0.25, 0.25, 0.5), x[0]))
        assert abs(mp.mpf(ref["loss"].hi[0]) + mp.mpf(ref["loss"].lo[0]) - loss) < 1e-28 * loss
        d = lse - mp.mpf(x[0, 2])
        assert abs(mp.mpf(ref["dlabels"].hi[0, 2]) + mp.mpf(ref["dlabels"].lo[0, 2]) - d) < 1e-28


def test_reference_masked_class_conventions() -> None:
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]])
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ref = exact(x, y, np.array([0, 1]), 1)
    assert np.isfinite(ref["loss"].hi).all()
    assert ref["loss"].hi[1] == 0.0  # masked everywhere but the labelled class
    assert ref["softmax"].hi[0, 1] == 0.0 and ref["log_softmax"].hi[0, 1] == -np.inf
    assert ref["dlabels"].hi[0, 1] == np.inf and ref["dlabels"].hi[1, 0] == np.inf
    np.testing.assert_array_equal(ref["dlogits"].hi[1], [0.0, 0.0, 0.0])
    assert np.isfinite(ref["dlogits"].hi).all() and ref["dlogits"].care.all()


def test_reference_nan_and_inf_rows() -> None:
    x = np.array([[0.0, 1.0], [np.nan, 1.0], [np.inf, 1.0], [-np.inf, -np.inf]])
    ref = exact(x, np.array([[1.0, 0.0]] * 4), np.zeros(4, np.int64), 1)
    for q in ("softmax", "log_softmax", "loss", "sparse_loss", "dlogits", "dlabels"):
        assert not np.isnan(ref[q].hi[0]).any()
        assert np.isnan(ref[q].hi[1:]).all(), q
    for q in ("dlogits", "dlabels", "sparse_dlogits"):  # NaN row: NaN gradients, required
        assert ref[q].care[1].all() and not ref[q].care[2:].any(), q
    assert ref["loss"].care.all()


def test_reference_of_a_confident_prediction_is_relative_accurate() -> None:
    x = np.array([[10.0, -11.0, -11.25]])
    ref = exact(x, np.array([[1.0, 0.0, 0.0]]), None, 1)
    expected = np.log1p(np.exp(-21.0) + np.exp(-21.25))
    assert ref["loss"].hi[0] == pytest.approx(expected, rel=1e-15)
    assert ref["log_softmax"].hi[0, 0] == pytest.approx(-expected, rel=1e-15)


def test_metric_agrees_on_matching_nan_and_inf() -> None:
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 1.0, 2.0]])
    ref = exact(x, None, None, 1)["log_softmax"]
    got = ref.hi.astype(np.float32)
    assert metric.measure(got, ref, "float32").error <= 1.0
    for bad in ((0, 1, 0.0), (0, 1, np.inf), (1, 0, 1.0), (0, 0, np.nan), (0, 2, -np.inf)):
        wrong = got.copy()
        wrong[bad[:2]] = bad[2]
        m = metric.measure(wrong, ref, "float32")
        assert m.error == np.inf and f"at {bad[:2]}" in m.detail


def test_metric_rejects_wrong_shape_dtype_and_missing() -> None:
    ref = exact(SEED_LOGITS, None, None, 1)["softmax"]
    assert metric.measure(None, ref, "float32").error == np.inf
    assert "shape" in metric.measure(ref.hi[:1].astype(np.float32), ref, "float32").detail
    assert "dtype float64" in metric.measure(ref.hi, ref, "float32").detail


def test_metric_units() -> None:
    ref = exact(SEED_LOGITS, SEED_LABELS, None, 1)["loss"]
    # correctly rounded output: at most half an eps of the value, far below a unit
    for dtype in cases.DTYPES:
        rounded = ref.hi.astype(cases._np_dtype(dtype))
        assert metric.measure(rounded, ref, dtype).error <= 0.5
    # a relative error of 3e-4 in float32 is hundreds of units
    off = (ref.hi * (1 + 3e-4)).astype(np.float32)
    assert metric.measure(off, ref, "float32").error > 50 * metric.TOLERANCE["loss"]
    # the relative metric: eps * |exact|
    tiny = exact(np.array([[10.0, -11.0]]), np.array([[1.0, 0.0]]), None, 1)["loss"]
    assert metric.measure(np.float32([0.0]), tiny, "float32").error < 1  # absolute: fine
    assert metric.measure(np.float32([0.0]), tiny, "float32", metric.RELATIVE).error > 1e6


def test_catalog_is_named_documented_and_deterministic() -> None:
    names = cases.case_names()
    assert len(names) == len(set(names)) and all(c.doc for c in cases.CATALOG)
    for case in cases.CATALOG:
        a = case.build(np.random.default_rng(1), "float32")
        b = case.build(np.random.default_rng(1), "float32")
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_inputs_are_rounded_to_the_dtype(dtype: str) -> None:
    for name in cases.case_names():
        inp = cases.inputs(name, dtype)
        assert inp.logits.dtype.name == dtype and inp.labels.dtype.name == dtype
        assert inp.logits.shape == inp.labels.shape
        if inp.sparse is not None:
            assert inp.sparse.dtype.kind == "i"
            shape = inp.logits.shape
            expected = shape[:inp.class_axis] + shape[inp.class_axis + 1 :]
            assert inp.sparse.shape == expected, name


def test_sparse_quantities_only_where_sparse_labels_exist() -> None:
    assert "sparse_loss" in runner.quantities("seed")
    assert "sparse_loss" not in runner.quantities("soft_labels")
    assert runner.quantities("sparse_out_of_range") == ["out_of_range"]
    assert cases.inputs("sparse_edges", "float32").sparse.dtype == np.int32


def test_progress_bar_only_on_a_terminal() -> None:
    plain = io.StringIO()
    progress = report.Progress(3, plain)
    progress.step("x")
    progress.close()
    assert plain.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    progress = report.Progress(2, tty)
    progress.step("numpy/eager seed float32")
    assert "1/2" in tty.getvalue() and "seed" in tty.getvalue()


@pytest.mark.parametrize("argv, message", [
    (["--backend", "no-such-backend"], "unknown backend 'no-such-backend'"),
    (["--case", "no-such-case"], "unknown case 'no-such-case'"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--import", "no_such_module_here"], "--import no_such_module_here"),
])
def test_cli_bad_usage_is_one_line_and_exit_2(argv: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert xent.cli.main(["conformance", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert xent.cli.main(["conformance", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cases.case_names())


def test_cli_matrix_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "conformance.json"
    status = xent.cli.main(["conformance", "--backend", "numpy", "--case", "seed", "--case",
                            "masked", "--case", "sparse_out_of_range", "--dtype", "float32",
                            "--json", str(path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.splitlines()[0].split() == ["case", "numpy"]
    assert "0 failed" in out
    document = json.loads(path.read_text())
    assert document["schema"] == "xent-conformance/1" and document["passed"] is True
    assert document["targets"] == [{"backend": "numpy", "mode": "eager",
                                    "dtypes": list(xent.backends.get("numpy").dtypes),
                                    "tracing": False, "autodiff": False}]
    records = document["records"]
    assert {r["case"] for r in records} == {"seed", "masked", "sparse_out_of_range"}
    keys = {"backend", "mode", "case", "dtype", "quantity", "against", "metric", "error",
            "tolerance", "passed", "status", "detail"}
    assert all(set(r) == keys for r in records)
    loss = next(r for r in records if r["case"] == "seed" and r["quantity"] == "loss")
    assert loss["status"] == "pass" and loss["error"] <= loss["tolerance"] == 8.0
    grads = [r for r in records if r["quantity"] == "dlogits"]
    assert grads and all(r["status"] == "n/a" and r["passed"] is None for r in grads)
    oor = next(r for r in records if r["quantity"] == "out_of_range")
    assert oor["status"] == "pass"


def test_reference_forward_mode_matches_finite_differences_of_the_reference() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(3, 5)), rng.uniform(0.0, 2.0, size=(3, 5))
    dx, dy = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    labels = np.array([4, 0, 2])
    ref = exact(x, y, labels, 1, (dx, dy))
    h = 1e-6  # central differences of the float64 reference: error ~h**2 and ~eps / h

    def at(t: float) -> dict[str, Any]:
        return exact(x + t * dx, y + t * dy, labels, 1)

    plus, minus = at(h), at(-h)
    for q in ("softmax", "log_softmax", "loss", "sparse_loss"):
        numeric = (plus[q].hi - minus[q].hi) / (2 * h)
        np.testing.assert_allclose(ref[f"jvp_{q}"].hi, numeric, rtol=1e-7, atol=1e-8, err_msg=q)


def test_reference_forward_mode_at_a_masked_class() -> None:
    x = np.array([[0.5, 1.5, -np.inf]])
    y = np.array([[0.0, 1.0, 0.0]])
    dx = np.array([[1.0, -2.0, 3.0]])  # a tangent at the masked class changes nothing
    ref = exact(x, y, np.array([1]), 1, (dx, None))
    p = np.exp(x[0, :2] - np.logaddexp(*x[0, :2]))
    mean = p @ dx[0, :2]
    np.testing.assert_allclose(ref["jvp_log_softmax"].hi[0], dx[0] - mean, rtol=1e-15)
    np.testing.assert_allclose(ref["jvp_softmax"].hi[0, :2], p * (dx[0, :2] - mean), rtol=1e-15)
    assert ref["jvp_softmax"].hi[0, 2] == 0.0
    expected = p[0] * dx[0, 0] + (p[1] - 1.0) * dx[0, 1]  # (softmax - labels) . dx
    assert ref["jvp_loss"].hi[0] == pytest.approx(expected, rel=1e-15)
    assert ref["jvp_sparse_loss"].hi[0] == pytest.approx(expected, rel=1e-15)


def test_tangents_are_exact_in_every_dtype_and_hold_labels_at_masks() -> None:
    for dtype in cases.DTYPES:
        dx, dy = cases.tangents("seed", dtype)
        assert dx.dtype == cases.inputs("seed", dtype).logits.dtype and dy is not None
        np.testing.assert_array_equal(dx.astype(np.float64), cases.tangents("seed", "float64")[0])
    assert cases.tangents("masked", "float32")[1] is None


def test_metric_expects_infinity_where_the_exact_value_overflows_the_dtype() -> None:
    ref = exact(np.array([[0.0, 1.0]]), None, None, 1)["log_softmax"]
    big = type(ref)(np.array([[-7e4, 1.0]]), np.zeros((1, 2)), np.ones((1, 2)), ref.care)
    assert metric.measure(np.float16([[-np.inf, 1.0]]), big, "float16").error == 0.0
    assert metric.measure(np.float16([[-65504.0, 1.0]]), big, "float16").error == np.inf
    assert metric.measure(np.float32([[-7e4, 1.0]]), big, "float32").error == 0.0
