"""The mapping, row by row: the TF1 call (a TF1 graph run in a Session through
``tf.compat.v1``), its TF2 and ``tf.compat.v2`` twins (eager), the xent calls, and what
``xent migrate`` makes of the TF1 call, all give the same values and gradients."""

from __future__ import annotations

import functools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the mapping is checked against TensorFlow")

import xent  # noqa: E402
from xent.migration import mapping  # noqa: E402

LOGITS = np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]])
SOFT = np.array([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])  # soft labels: the label gradient shows
INPUTS = {
    "dense": {"labels": SOFT, "logits": LOGITS},
    "sparse": {"labels": np.array([1, 2], dtype=np.int32), "logits": LOGITS},
    "unary": {"logits": LOGITS, "x": np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)},
}
ROWS = [row for row in mapping.ROWS if row.examples]


def _weights(shape: tuple[int, ...]) -> np.ndarray:
    """Fixed weights for the gradient of ``sum(out * w)`` (a plain sum hides softmax's)."""
    return np.linspace(0.5, 1.5, int(np.prod(shape))).reshape(shape)


def _floating(name: str, arrays: dict[str, np.ndarray]) -> bool:
    return arrays[name].dtype.kind == "f"


def tf1_graph(code: str, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Value and gradients of ``code`` (an expression or statements setting ``out``) in a
    TF1 graph built through ``tf.compat.v1`` and run in a Session."""
    with tf.Graph().as_default() as graph:
        tensors = {k: tf.constant(v) for k, v in arrays.items()}
        out = _evaluate(code, {"tf": tf.compat.v1, "xent": xent}, tensors)
        sources = [tensors[k] for k in sorted(arrays) if _floating(k, arrays)]
        total = tf.reduce_sum(out * _weights(tuple(out.shape)))
        grads = tf.compat.v1.gradients(total, sources)
        grads = [tf.zeros_like(s) if g is None else g for g, s in zip(grads, sources)]
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run([out, *grads])


def tf2_eager(code: str, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The same in TF2 eager mode, gradients by GradientTape."""
    tensors = {k: tf.constant(v) for k, v in arrays.items()}
    sources = [tensors[k] for k in sorted(arrays) if _floating(k, arrays)]
    with tf.GradientTape() as tape:
        for source in sources:
            tape.watch(source)
        out = _evaluate(code, {"tf": tf, "xent": xent}, tensors)
        total = tf.reduce_sum(out * _weights(tuple(out.shape)))
    grads = tape.gradient(total, sources)
    return [np.asarray(t) for t in
            [out, *(tf.zeros_like(s) if g is None else g for g, s in zip(grads, sources))]]


def _evaluate(code: str, globals_: dict[str, object], tensors: dict[str, object]) -> object:
    if not code.lstrip().startswith("out ="):
        return eval(code, globals_, dict(tensors))  # noqa: S307 - the mapping's own examples
    namespace = {**globals_, **tensors}
    exec(code, namespace)  # noqa: S102
    return namespace["out"]


def _assert_same(got: list[np.ndarray], want: list[np.ndarray], rtol: float = 1e-9) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12)


def _rtol(row: mapping.Row) -> float:
    # TF1's tf.losses reduce in float32 whatever the input dtype (compute_weighted_loss)
    return 1e-6 if row.tf1.startswith("tf.losses.") else 1e-9


@functools.cache
def _tf1(row_index: int) -> tuple[np.ndarray, ...]:
    row = ROWS[row_index]
    return tuple(tf1_graph(row.examples["tf1"], INPUTS[row.inputs]))


CASES = [(i, column) for i, row in enumerate(ROWS) for column in row.examples
         if column != "tf1"]


@pytest.mark.parametrize("index, column", CASES,
                         ids=[f"{ROWS[i].tf1}-{column}" for i, column in CASES])
def test_each_column_agrees_with_tf1(index: int, column: str) -> None:
    row = ROWS[index]
    run = tf1_graph if column == "xent_compat" else tf2_eager  # the twin runs in TF1 graphs
    _assert_same(run(row.examples[column], INPUTS[row.inputs]), list(_tf1(index)), _rtol(row))


@pytest.mark.parametrize("index", range(len(ROWS)), ids=[r.tf1 for r in ROWS])
@pytest.mark.parametrize("to", ["tf2", "xent"])
def test_migrated_tf1_call_agrees_with_tf1(index: int, to: str) -> None:
    from xent.migration import migrate_source

    row = ROWS[index]
    # a Session in the file marks it as TF1 code, as in a real TF1 program
    source = f"import tensorflow as tf\nsess = tf.Session()\nout = {row.examples['tf1']}\n"
    migrated = migrate_source(source, to).after
    assert isinstance(migrated, str)
    code = "\n".join(line for line in migrated.splitlines() if not line.startswith("import "))
    assert "Session" not in code and "compat" not in code
    _assert_same(tf2_eager(code + "\n", INPUTS[row.inputs]), list(_tf1(index)), _rtol(row))


def test_session_row_run_is_numpy() -> None:
    with tf.Graph().as_default():
        t = tf.nn.softmax(tf.constant(LOGITS))
        with tf.compat.v1.Session() as sess:
            in_graph = sess.run([t, t * 2])
    eager = tf.nn.softmax(tf.constant(LOGITS))
    _assert_same([eager.numpy(), (eager * 2).numpy()], in_graph)


def _lookup(module: object, path: str) -> object:
    for part in path.split("."):
        module = getattr(module, part)
    return module


@pytest.mark.parametrize("name", sorted(mapping.COMPAT_V1 | mapping.GRAPH_ONLY))
def test_compat_v1_names_exist_there(name: str) -> None:
    _lookup(tf.compat.v1, name)


@pytest.mark.parametrize("name", sorted(mapping.COMPAT_V1))
def test_compat_v1_names_are_gone_from_tf2(name: str) -> None:
    with pytest.raises(AttributeError):
        _lookup(tf, name)


def test_tf2_and_compat_v2_names_exist() -> None:
    for row in mapping.ROWS:
        for text in (row.tf2, row.compat_v2):
            for part in mapping.plain(text).split(" + "):
                name = part.split("(")[0].strip()
                if name.startswith("tf.") and " " not in name:
                    _lookup(tf, name[3:])


def test_every_row_has_every_field() -> None:
    required = {"tf.nn.softmax", "tf.nn.log_softmax", "tf.nn.softmax_cross_entropy_with_logits",
                "tf.nn.softmax_cross_entropy_with_logits_v2",
                "tf.nn.sparse_softmax_cross_entropy_with_logits",
                "tf.losses.softmax_cross_entropy", "tf.losses.sparse_softmax_cross_entropy",
                "tf.log", "tf.reduce_sum", "tf.reduce_mean", "tf.Session"}
    assert required == {row.tf1 for row in mapping.ROWS}
    for row in mapping.ROWS:
        assert all((row.tf1, row.tf2, row.compat_v2, row.xent, row.change))
        assert not row.examples or {"tf1", "tf2", "compat_v2"} <= set(row.examples)
