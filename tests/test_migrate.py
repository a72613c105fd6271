"""The rewrite rules of ``xent migrate``, on source text (no framework is imported)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="xent migrate needs libcst (pip install 'xent[migrate]')")

from xent.migration import SourceError, migrate_source  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "migrate"


def migrate(code: str, to: str = "tf2") -> tuple[str, list[str]]:
    """(migrated code, report lines ``line: rule: note``) of dedented ``code``."""
    result = migrate_source(textwrap.dedent(code), to)
    assert isinstance(result.after, str)
    return result.after, [f"{f.line}: {f.rule}: {f.note}" for f in result.findings]


def rules(report: list[str]) -> list[tuple[int, str]]:
    return [(int(line.split(":")[0]), line.split(": ")[1]) for line in report]


# -- the seed and the golden files ---------------------------------------------------------

@pytest.mark.parametrize("name, to, expected", [
    ("seed_tf1.py", "tf2", "seed_tf2.py"),
    ("seed_tf1.py", "xent", "seed_xent.py"),
    ("graph_tf1.py", "tf2", "graph_tf2.py"),
    ("session_block_tf1.py", "tf2", "session_block_tf2.py"),
])
def test_fixture_migrates_to_its_golden_file(name: str, to: str, expected: str) -> None:
    result = migrate_source((FIXTURES / name).read_bytes(), to)
    assert result.after == (FIXTURES / expected).read_bytes()


@pytest.mark.parametrize("to", ["tf2", "xent"])
@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.py")))
def test_second_run_changes_nothing(name: str, to: str) -> None:
    once = migrate_source((FIXTURES / name).read_bytes(), to).after
    twice = migrate_source(once, to)
    assert twice.after == once
    assert not [f for f in twice.findings if f.kind == "change"]


def test_seed_report_names_every_change() -> None:
    _, report = migrate((FIXTURES / "seed_tf1.py").read_text())
    found = rules(report)
    assert (8, "session") in found
    assert (26, "math-log") in found and (26, "reduction-indices") in found
    assert (26, "log-softmax") in found and (30, "log-softmax") in found
    assert (34, "argument-order") in found and (34, "label-gradient") in found
    assert [r for r in report if r.startswith("34: argument-order")] == [
        "34: argument-order: positional call is TensorFlow < 1.0's (logits, labels) order: "
        "now labels=y_true, logits=y_hat"]


# -- the cross-entropy family --------------------------------------------------------------

def test_positional_call_is_the_pre_1_0_order() -> None:
    after, _ = migrate("""\
        import tensorflow as tf
        s = tf.Session()
        a = tf.nn.softmax_cross_entropy_with_logits(y_hat, y_true, -1)
        b = tf.nn.sparse_softmax_cross_entropy_with_logits(y_hat, classes)
        """)
    assert "tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y_true), " \
           "logits=y_hat, axis=-1)" in after
    assert "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=classes, logits=y_hat)" in after


def test_positional_call_in_tf2_code_is_left_and_reported() -> None:
    code = """\
        import tensorflow as tf
        loss = tf.nn.softmax_cross_entropy_with_logits(y, x)
        """
    after, report = migrate(code)
    assert after == textwrap.dedent(code)
    assert rules(report) == [(2, "argument-order")]
    assert "name the arguments" in report[0]


def test_named_call_in_tf2_code_is_left_with_a_review_note() -> None:
    code = """\
        import tensorflow as tf
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)
        """
    after, report = migrate(code)
    assert after == textwrap.dedent(code)
    assert rules(report) == [(2, "label-gradient")]


def test_stop_gradient_is_never_added_twice() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        p = tf.log(q)
        a = tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y), logits=x)
        b = tf.nn.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0]], logits=x)
        """)
    assert after.count("stop_gradient") == 1
    assert "label-gradient" not in " ".join(report)


def test_v2_suffix_dim_and_layout() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        loss = tf.nn.softmax_cross_entropy_with_logits_v2(
            labels=y,  # soft labels
            logits=x,
            dim=0,
        )
        p = tf.nn.softmax(x, dim=1)
        q = tf.nn.log_softmax(x, 1)
        f = tf.nn.softmax_cross_entropy_with_logits_v2
        """)
    assert after == textwrap.dedent("""\
        import tensorflow as tf
        loss = tf.nn.softmax_cross_entropy_with_logits(
            labels=y,  # soft labels
            logits=x,
            axis=0,
        )
        p = tf.nn.softmax(x, axis=1)
        q = tf.nn.log_softmax(x, 1)
        f = tf.nn.softmax_cross_entropy_with_logits
        """)
    assert {r for _, r in rules(report)} == {"v2-suffix", "dim-axis"}


def test_losses_simple_and_weighted() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        a = tf.losses.softmax_cross_entropy(onehot, logits)
        b = tf.losses.sparse_softmax_cross_entropy(labels=k, logits=logits)
        c = tf.losses.softmax_cross_entropy(onehot, logits, weights=w)
        """)
    assert "a = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(" \
           "labels=tf.stop_gradient(onehot), logits=logits))" in after
    assert "b = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(" \
           "labels=k, logits=logits))" in after
    assert "c = tf.compat.v1.losses.softmax_cross_entropy(onehot, logits, weights=w)" in after
    assert ("4", "compat-v1") in [(r.split(":")[0], r.split(": ")[1]) for r in report]


def test_reductions_log_and_keyword_clash() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        a = tf.reduce_sum(x, reduction_indices=[1], keep_dims=True)
        b = tf.reduce_max(x, reduction_indices=1)
        c = tf.math.reduce_mean(x, keep_dims=False)
        d = tf.reduce_sum(x, 1, reduction_indices=1)
        e = tf.log(x)
        """)
    assert "a = tf.reduce_sum(x, axis=[1], keepdims=True)" in after
    assert "b = tf.reduce_max(x, axis=1)" in after
    assert "c = tf.math.reduce_mean(x, keepdims=False)" in after
    assert "d = tf.reduce_sum(x, 1, reduction_indices=1)" in after
    assert "e = tf.math.log(x)" in after
    assert (5, "manual") in rules(report)


# -- import aliases ---------------------------------------------------------------------------

def test_import_aliases_are_followed() -> None:
    after, _ = migrate("""\
        import tensorflow as tf1
        from tensorflow import nn
        import numpy as tf  # not TensorFlow
        a = tf1.log(x)
        b = nn.softmax_cross_entropy_with_logits(labels=y, logits=x)
        c = tf.log(x)
        """)
    assert "a = tf1.math.log(x)" in after
    assert "b = nn.softmax_cross_entropy_with_logits(labels=tf1.stop_gradient(y), logits=x)" \
        in after
    assert "c = tf.log(x)" in after


def test_tf1_names_imported_by_name_are_reported() -> None:
    code = """\
        from tensorflow import log, Session
        from tensorflow.nn import softmax_cross_entropy_with_logits as xent_fn
        import tensorflow as tf
        a = log(x)
        b = xent_fn(y_hat, y_true)
        """
    after, report = migrate(code)
    assert "b = xent_fn(labels=tf.stop_gradient(y_true), logits=y_hat)" in after
    assert "a = log(x)" in after
    assert "1: manual: `from tensorflow import log`: TF2 has no tensorflow.log; import " \
           "tensorflow.math.log" in report
    assert any(r.startswith("1: manual: `from tensorflow import Session`") for r in report)


def test_compat_v1_code_keeps_its_tf1_meaning() -> None:
    code = """\
        import tensorflow.compat.v1 as tf
        a = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, dim=0)
        b = tf.log(x)
        c = tf.nn.softmax_cross_entropy_with_logits(y_true, y_hat)
        d = tf.nn.sparse_softmax_cross_entropy_with_logits(k, y_hat)
        """
    after, report = migrate(code)
    # runs on TF2 as it is, with its meaning: TF2's compat.v1 reads (labels, logits)
    assert after == textwrap.dedent(code)
    assert "argument-order" not in " ".join(report)
    after, _ = migrate(code, "xent")
    assert "a = xent.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y), logits=x, " \
           "axis=0)" in after
    assert "c = xent.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y_true), " \
           "logits=y_hat)" in after
    assert "d = xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=y_hat)" in after


def test_compat_v1_sessions_are_left_and_get_no_switch() -> None:
    code = """\
        import tensorflow.compat.v1 as tf
        x = tf.placeholder(tf.float32)
        y = tf.constant(1.0)
        with tf.Session() as sess:
            print(sess.run(y))
        """
    after, report = migrate(code)
    assert after == textwrap.dedent(code)
    assert not [r for r in report if "session" in r or "disable" in r]


# -- Session code -------------------------------------------------------------------------------

def test_session_patterns_become_eager_code() -> None:
    after, report = migrate("""\
        import numpy as np
        import tensorflow as tf

        x = tf.constant(np.ones(3))
        y = tf.nn.softmax(x)
        # a session
        sess = tf.Session()  # default graph

        a, b = sess.run([x, y])
        c = sess.run((x, y + 1))
        d = sess.run({"x": x})
        e = sess.run(-x)
        f = tf.Session().run(x)
        fetches = [x, {"y": y}]
        g = sess.run(fetches)
        sess.close()
        print(a)
        """)
    assert after == textwrap.dedent("""\
        import numpy as np
        import tensorflow as tf

        x = tf.constant(np.ones(3))
        y = tf.nn.softmax(x)
        # a session
        # default graph

        a, b = [x.numpy(), y.numpy()]
        c = (x.numpy(), (y + 1).numpy())
        d = {"x": x.numpy()}
        e = (-x).numpy()
        f = x.numpy()
        fetches = [x, {"y": y}]
        g = tf.nest.map_structure(lambda t: t.numpy(), fetches)
        print(a)
        """)
    assert {r for _, r in rules(report)} == {"session"}


def test_with_session_block_is_unwrapped() -> None:
    after, _ = migrate("""\
        import tensorflow as tf
        t = tf.reduce_sum(tf.constant([1.0, 2.0]))
        def show():
            # evaluate
            with tf.Session() as s:  # here
                value = s.run(t)
                if value.any():
                    print(value)
            return value
        """)
    assert after == textwrap.dedent("""\
        import tensorflow as tf
        t = tf.reduce_sum(tf.constant([1.0, 2.0]))
        def show():
            # evaluate
            # here
            value = t.numpy()
            if value.any():
                print(value)
            return value
        """)


def test_interactive_session_eval() -> None:
    after, _ = migrate("""\
        import tensorflow as tf
        sess = tf.InteractiveSession()
        y = tf.constant(2.0) * 3
        print(y.eval())
        """)
    assert after == "import tensorflow as tf\ny = tf.constant(2.0) * 3\nprint(y.numpy())\n"


@pytest.mark.parametrize("fetch, reason", [
    ("model.loss", "`model.loss` is not provably a tensor"),
    ("tf.group(y, y)", "`tf.group(y, y)` is not provably a tensor"),
    ("train_op", "`train_op` is not provably a tensor"),
    ("param", "`param` is not provably a tensor"),
    ("[y, tf.no_op()]", "`tf.no_op()` is not provably a tensor"),
])
def test_operations_and_unknown_fetches_stay_graph_code(fetch: str, reason: str) -> None:
    after, report = migrate(f"""\
        import tensorflow as tf
        y = tf.constant(1.0)
        train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        def f(param):
            sess = tf.Session()
            return sess.run({fetch})
        """)
    assert ".numpy()" not in after
    assert "sess = tf.compat.v1.Session()" in after
    assert after.count("tf.compat.v1.disable_eager_execution()") == 1
    assert any("graph-code" in r and reason in r for r in report), report


@pytest.mark.parametrize("code, eager", [
    # a random tensor fetched once: drawn once either way
    ("r = tf.random_normal([2])\nprint(sess.run(r))\n", True),
    # fetched twice, or in a loop, or through what depends on it: TF1 drew anew each time
    ("r = tf.random_normal([2])\nprint(sess.run(r))\nprint(sess.run(r))\n", False),
    ("r = tf.random_uniform([2])\nfor _ in range(2):\n    print(sess.run(r))\n", False),
    ("r = tf.random_normal([2])\ns = r * 2\nprint(sess.run([r, s]))\n", True),
    ("r = tf.random_normal([2])\ns = r * 2\nprint(sess.run(r))\nprint(sess.run(s))\n",
     False),
    ("d = tf.nn.dropout(tf.ones([4]), 0.5)\nprint(sess.run(d))\nprint(d.eval())\n", False),
    # a value the tool cannot see into (a helper may build a random op) fetched twice
    ("h = tf.identity(helper())\nprint(sess.run(h))\nprint(sess.run(h + 1))\n", False),
    # NumPy runs once in TF1 and eager code alike
    ("c = tf.constant(np.ones(2))\nprint(sess.run(c))\nprint(sess.run(c + 1))\n", True),
])
def test_random_values_fetched_more_than_once_stay_graph_code(code: str, eager: bool) -> None:
    after, report = migrate("import numpy as np\nimport tensorflow as tf\n"
                            "sess = tf.Session()\n" + code)
    assert ("sess.run" not in after) is eager, after
    if not eager:
        assert any("fetched more than once" in r for r in report), report


@pytest.mark.parametrize("pipeline", [
    "q = tf.FIFOQueue(3, tf.float32)",
    "threads = tf.train.start_queue_runners(sess=sess)",
    "reader = tf.TFRecordReader()",
    "x = dataset.make_one_shot_iterator().get_next()",
    "x = iterator.get_next()",
])
def test_input_pipelines_stay_graph_code(pipeline: str) -> None:
    after, report = migrate(f"""\
        import tensorflow as tf
        y = tf.constant(1.0)
        sess = tf.Session()
        {pipeline}
        print(sess.run(y))
        """)
    assert "print(sess.run(y))" in after
    assert any("graph-code" in r for r in report)


@pytest.mark.parametrize("blocker, reason", [
    ("sess.run(y, feed_dict={x: 1.0})", "feed_dict"),
    ("x = tf.placeholder(tf.float32)", "tf.placeholder is graph-mode API"),
    ("sess.run(tf.global_variables_initializer())", "global_variables_initializer"),
    ("saver.save(sess, 'model')", "`sess` is used as"),
    ("sess.run('y:0')", "not provably a tensor"),
])
def test_graph_code_stays_runnable_through_compat_v1(blocker: str, reason: str) -> None:
    after, report = migrate(f"""\
        import tensorflow as tf
        sess = tf.Session()
        print(sess.run(y))
        {blocker}
        """)
    assert "sess = tf.compat.v1.Session()" in after
    assert "print(sess.run(y))" in after
    assert after.count("tf.compat.v1.disable_eager_execution()") == 1
    assert after.startswith("import tensorflow as tf\ntf.compat.v1.disable_eager_execution()\n")
    assert any("graph-code" in r and reason in r for r in report), report


def test_session_with_a_config_or_a_graph_is_kept() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        g = tf.Graph()
        with g.as_default():
            y = tf.constant(1.0)
        with tf.Session(graph=g) as sess:
            print(sess.run(y))
        """)
    assert "with tf.compat.v1.Session(graph=g) as sess:" in after
    assert "disable_eager_execution" not in after  # the file builds its own graph
    assert any("has arguments" in r for r in report)


# -- --to xent -----------------------------------------------------------------------------------

def test_to_xent_emits_xent_calls_and_one_import() -> None:
    after, report = migrate("""\
        \"\"\"Doc.\"\"\"
        from __future__ import annotations
        import tensorflow as tf
        p = tf.nn.softmax(x, dim=1)
        q = tf.nn.log_softmax(x, axis=None, name="q")
        a = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, dim=1)
        b = tf.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=x)
        c = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x)
        d = tf.losses.softmax_cross_entropy(y, x)
        e = tf.log(x)
        """, "xent")
    assert after == textwrap.dedent("""\
        \"\"\"Doc.\"\"\"
        from __future__ import annotations
        import tensorflow as tf
        import xent
        p = xent.softmax(x, axis=1)
        q = xent.log_softmax(x)
        a = xent.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y), logits=x, axis=1)
        b = xent.softmax_cross_entropy_with_logits(labels=y, logits=x)
        c = xent.sparse_softmax_cross_entropy_with_logits(labels=k, logits=x)
        d = xent.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y), logits=x, reduction="mean")
        e = tf.math.log(x)
        """)  # noqa: E501
    assert "to-xent" in {r for _, r in rules(report)}


def test_to_xent_keeps_an_existing_import() -> None:
    after, _ = migrate("""\
        import xent as xt
        import tensorflow.compat.v2 as tf
        a = tf.nn.softmax_cross_entropy_with_logits(y, x)
        """, "xent")
    assert after == ("import xent as xt\nimport tensorflow.compat.v2 as tf\n"
                     "a = xt.softmax_cross_entropy_with_logits(labels=y, logits=x)\n")


# -- lint --------------------------------------------------------------------------------------

def test_log_softmax_lint_in_every_framework() -> None:
    code = """\
        import numpy as np
        import jax
        import jax.numpy as jnp
        import tensorflow as tf
        import torch
        import torch.nn.functional as F
        from scipy.special import softmax

        def f(x, y):
            a = tf.math.log(tf.nn.softmax(x))
            b = torch.log(F.softmax(x, dim=1))
            c = torch.softmax(x, 1).log()
            p = jax.nn.softmax(x)
            d = jnp.log(p)
            e = np.log(np.exp(x) / np.sum(np.exp(x), axis=1, keepdims=True))
            g = np.log(softmax(x))
            return -np.sum(y * np.log(softmax(x)))
        """
    after, report = migrate(code)
    assert after == textwrap.dedent(code)
    lint = [r for r in report if ": log-softmax: " in r]
    assert [int(r.split(":")[0]) for r in lint] == [10, 11, 12, 14, 15, 16, 17]
    assert "tf.nn.log_softmax(x)" in lint[0]
    assert "torch.log_softmax(x, dim)" in lint[1] and "torch.log_softmax" in lint[2]
    assert "jax.nn.log_softmax(x)" in lint[3] and "(through `p`)" in lint[3]
    assert "scipy.special.log_softmax(x)" in lint[4]
    assert "softmax_cross_entropy_with_logits" in lint[6]


def test_log_softmax_lint_needs_a_single_assignment_in_the_same_scope() -> None:
    _, report = migrate("""\
        import torch
        p = torch.softmax(x, 1)
        p = p + 1
        a = torch.log(p)
        q = torch.softmax(x, 1)
        def f():
            return torch.log(q)
        """)
    assert not [r for r in report if "log-softmax" in r]


# -- safety -----------------------------------------------------------------------------------

def test_nothing_to_migrate_is_returned_identical() -> None:
    code = b"# -*- coding: utf-8 -*-\r\nimport tensorflow as tf\r\ny = tf.nn.softmax(x)\r\n"
    result = migrate_source(code)
    assert result.after is code and not result.changed


def test_unparseable_source_raises_with_its_line() -> None:
    with pytest.raises(SourceError) as error:
        migrate_source("import tensorflow as tf\n\ndef f(:\n    pass\n")
    assert error.value.line == 3


def test_unknown_target() -> None:
    with pytest.raises(ValueError, match="tf2 or xent"):
        migrate_source("x = 1\n", "tf3")


def test_every_rule_id_is_documented() -> None:
    from xent.migration.report import RULES

    for path in FIXTURES.glob("*_tf1.py"):
        for to in ("tf2", "xent"):
            for finding in migrate_source(path.read_bytes(), to).findings:
                assert finding.rule in RULES
