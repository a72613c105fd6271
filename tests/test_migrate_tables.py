"""TensorFlow's own upgrade tables, read from the installed wheel: the long tail of TF1
names, renamed only where the meaning provably stays (the same function, or TF1's own
``tf.compat.v1`` one); xent's rules keep precedence; without TensorFlow, a clear note."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("libcst", reason="xent migrate needs libcst (pip install 'xent[migrate]')")

from xent.migration import migrate_source, upgrade_tables  # noqa: E402

HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAS_TF, reason="the tables ship with TensorFlow")


def migrate(code: str) -> tuple[str, list[str]]:
    result = migrate_source(textwrap.dedent(code))
    return str(result.after), [f"{f.line}: {f.rule}: {f.note}" for f in result.findings]


@needs_tf
def test_long_tail_names_from_the_tables() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        a = tf.random_normal([2])
        b = tf.div(x, y)
        w = tf.summary.FileWriter("logs")
        f = tf.app.flags.FLAGS
        g = tf.gfile.Exists("x")
        h = tf.nn.rnn_cell.BasicLSTMCell(4)
        """)
    assert "a = tf.random.normal([2])" in after  # one function, two names
    assert "b = tf.compat.v1.div(x, y)" in after  # no TF2 twin: TF1's own
    assert 'w = tf.compat.v1.summary.FileWriter("logs")' in after
    assert "f = tf.compat.v1.app.flags.FLAGS" in after
    assert 'g = tf.compat.v1.gfile.Exists("x")' in after  # hand-written rename: TF1's own
    assert "2: rename: tf.random_normal -> tf.random.normal (the same function)" in report
    if importlib.util.find_spec("tf_keras") is None:  # Keras 3: TF1's cells raise
        assert "h = tf.nn.rnn_cell.BasicLSTMCell(4)" in after
        assert "7: manual: the installed TensorFlow has no tf.nn.rnn_cell, nor " \
               "tf.compat.v1.nn.rnn_cell: port it by hand" in report
    else:
        assert "h = tf.compat.v1.nn.rnn_cell.BasicLSTMCell(4)" in after


def test_names_tensorflow_2_lacks_entirely_are_reported() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        a = tf.contrib.layers.xavier_initializer()
        b = tf.mul(x, tf.neg(y))
        c = tf.float32.as_numpy_dtype
        """)
    assert "b = tf.math.multiply(x, tf.math.negative(y))" in after
    if HAS_TF:
        assert [r for r in report if "manual" in r] == [
            "2: manual: the installed TensorFlow has no tf.contrib, nor tf.compat.v1.contrib: "
            "port it by hand"]


@needs_tf
def test_functions_whose_arguments_changed_keep_tf1s_function() -> None:
    after, report = migrate("""\
        import tensorflow as tf
        sess = tf.Session()
        a = tf.argmax(x, dimension=1)
        b = tf.argmax(x, 1)
        c = tf.nn.dropout(x, 0.8)
        d = tf.nn.dropout(x, keep_prob=0.8)
        e = tf.name_scope("scope")
        """)
    assert "a = tf.compat.v1.argmax(x, dimension=1)" in after  # TF1-only keyword
    assert "b = tf.argmax(x, 1)" in after  # the same in both
    assert "c = tf.compat.v1.nn.dropout(x, 0.8)" in after  # keep_prob, not rate
    assert "d = tf.compat.v1.nn.dropout(x, keep_prob=0.8)" in after
    assert 'e = tf.name_scope("scope")' in after
    # without other TF1 code, a positional dropout is TF2's rate: reported, not rewritten
    after, report = migrate("import tensorflow as tf\nc = tf.nn.dropout(x, 0.8)\n")
    assert "c = tf.nn.dropout(x, 0.8)" in after
    assert any("manual" in r and "tf.nn.dropout" in r for r in report)


@needs_tf
def test_xent_rules_take_precedence_over_the_tables() -> None:
    after, _ = migrate("""\
        import tensorflow as tf
        p = tf.log(q)
        a = tf.nn.softmax_cross_entropy_with_logits(y_hat, y_true)
        b = tf.reduce_sum(x, reduction_indices=1)
        """)
    # tf_upgrade_v2 would swap a's arguments and call b through compat.v1
    assert "labels=tf.stop_gradient(y_true), logits=y_hat" in after
    assert "b = tf.reduce_sum(x, axis=1)" in after


def test_without_tensorflow_a_note_and_xents_own_rules(monkeypatch, capsys,
                                                      tmp_path) -> None:
    from xent.cli import main

    monkeypatch.setattr(upgrade_tables, "_compatibility_dir", lambda: None)
    upgrade_tables.load.cache_clear()
    try:
        after, _ = migrate("""\
            import tensorflow as tf
            x = tf.placeholder(tf.float32)
            y = tf.log(x)
            """)
        assert "tf.compat.v1.placeholder" in after and "tf.math.log" in after
        path = tmp_path / "old.py"
        path.write_text("import tensorflow as tf\ny = tf.log(x)\n")
        assert main(["migrate", str(path)]) == 0
        err = capsys.readouterr().err
        assert "note: TensorFlow is not installed" in err
    finally:
        upgrade_tables.load.cache_clear()


@needs_tf
@pytest.mark.slow
def test_every_table_rename_exists_and_is_the_same_function() -> None:
    """The proof behind the renames, against the installed TensorFlow: each target
    exists, and a target outside compat.v1 is the very function the TF1 name was."""
    renames = upgrade_tables.load().renames
    changed = {p: upgrade_tables.load().changed[p] is not None
               for p in upgrade_tables.load().changed}
    script = textwrap.dedent("""\
        import json, sys
        import tensorflow as tf
        from tensorflow.python.util import tf_decorator
        renames, changed = json.loads(sys.stdin.read())
        def get(root, path):
            for part in path.split("."):
                root = getattr(root, part)
            return root
        problems = []
        for old, new in renames.items():
            if new.split(".")[0] in ("keras", "estimator") or ".keras." in new:
                continue
            try:
                target = get(tf, new)
            except Exception as error:
                if "Keras 3" not in str(error):  # tf.compat.v1.nn.rnn_cell.*: TF1 API
                    problems.append(f"tf.{new} missing: {error}")  # TF 2.16+ no longer runs
                continue
            if new.startswith("compat.v1."):
                continue
            old_object = get(tf.compat.v1, old)
            if tf_decorator.unwrap(old_object)[1] is not tf_decorator.unwrap(target)[1]:
                problems.append(f"tf.{old} is not tf.{new}")
        for path in changed:
            try:
                get(tf.compat.v1, path)
            except Exception:
                pass  # only used where it exists
        print(json.dumps(problems))
        """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", script], input=json.dumps([renames, changed]),
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
