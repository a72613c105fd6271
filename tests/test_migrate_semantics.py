"""``xent migrate`` never changes what code computes: each TF1 program below runs as TF1 ran
it (TF 2.21's ``tf.compat.v1`` with ``disable_v2_behavior()``), is migrated, runs under
TF 2.21, and prints the same. Random values: the property (a new draw per run) is what
must hold, not the values.

All originals run in one subprocess, all migrated programs in another (one TensorFlow
import each): eager programs first, then those that stay graph code (their
``disable_eager_execution()`` is process-wide), each in a fresh graph.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("libcst", reason="xent migrate needs libcst (pip install 'xent[migrate]')")
if importlib.util.find_spec("tensorflow") is None:  # not imported here: subprocesses run it
    pytest.skip("the programs run under TensorFlow, which is not installed",
                allow_module_level=True)

from xent.migration import migrate_source  # noqa: E402
from xent.migration.ipython import mask  # noqa: E402

NUMBER = re.compile(r"-?\d+\.?\d*(?:e[-+]?\d+)?")
GRAPH = re.compile(r"disable_(eager_execution|v2_behavior)")

#: name -> (TF1 program, whether its migration is eager code, what to compare)
PROGRAMS: dict[str, tuple[str, bool, str]] = {
    # fetch structures keep their structure, held in names too
    "structures": ("""\
        import numpy as np
        import tensorflow as tf
        x = tf.constant(np.array([1.0, 2.0, 3.0]))
        p = tf.nn.softmax(x)
        fetches = [x, p]
        pair = (tf.reduce_sum(x), tf.reduce_max(p))
        named = {"x": x, "nested": [p, tf.log(p)]}
        sess = tf.Session()
        for value in (sess.run(fetches), sess.run(pair), sess.run(named),
                      sess.run([x, (p, {"s": tf.reduce_mean(x)})])):
            print(type(value).__name__, value)
        print(x.eval(session=sess))
        sess.close()
        """, False, "equal"),
    "structures_eager": ("""\
        import numpy as np
        import tensorflow as tf
        x = tf.constant(np.array([1.0, 2.0, 3.0]))
        p = tf.nn.softmax(x)
        fetches = [x, p]
        pair = (tf.reduce_sum(x), tf.reduce_max(p))
        named = {"x": x, "nested": [p, tf.log(p)]}
        with tf.Session() as sess:
            for value in (sess.run(fetches), sess.run(pair), sess.run(named),
                          sess.run([x, (p, {"s": tf.reduce_mean(x)})])):
                print(type(value).__name__, value)
        """, True, "equal"),
    # operations fetch None; a train op and an initializer are graph code
    "operations": ("""\
        import numpy as np
        import tensorflow as tf
        w = tf.Variable(np.array([1.0, -1.0]))
        loss = tf.reduce_sum(tf.square(w))
        train = tf.train.GradientDescentOptimizer(0.25).minimize(loss)
        group = tf.group(train)
        sess = tf.Session()
        print(sess.run(tf.global_variables_initializer()))
        print(sess.run(group), sess.run(loss))
        print(sess.run(train), sess.run(w))
        """, False, "equal"),
    # a stateful tensor fetched twice
    "stateful": ("""\
        import tensorflow as tf
        counter = tf.Variable(0)
        step = tf.assign_add(counter, 1)
        with tf.Session() as sess:
            sess.run(tf.initialize_all_variables())
            print(sess.run(step), sess.run(step), counter.eval())
        """, False, "equal"),
    # input pipelines: an iterator, a queue
    "pipelines": ("""\
        import tensorflow as tf
        items = tf.data.Dataset.range(3).make_one_shot_iterator().get_next()
        queue = tf.FIFOQueue(3, tf.int32)
        fill = queue.enqueue_many([[7, 8, 9]])
        with tf.Session() as sess:
            sess.run(fill)
            print(sess.run(items), sess.run(items), sess.run(queue.dequeue()))
        """, False, "equal"),
    # placeholders fed through feed_dict
    "feed_dict": ("""\
        import tensorflow as tf
        x = tf.placeholder(tf.float32, [None])
        y = tf.reduce_mean(x * 2)
        sess = tf.Session()
        print(sess.run(y, feed_dict={x: [1.0, 2.0]}), sess.run(y, {x: [5.0]}))
        """, False, "equal"),
    # a random tensor fetched more than once: a new draw each run
    "random_twice": ("""\
        import tensorflow as tf
        r = tf.random_normal([3])
        s = r * 1.0
        sess = tf.Session()
        print(sess.run(r))
        print(sess.run(s))
        for _ in range(2):
            print(sess.run(r))
        """, False, "draws"),
    "random_eval": ("""\
        import tensorflow as tf
        sess = tf.InteractiveSession()
        d = tf.nn.dropout(tf.ones([8]), keep_prob=0.5)
        u = tf.random_uniform([4])
        print(u.eval())
        print(u.eval())
        """, False, "draws"),
    # fetched once: eager code draws once too
    "random_once": ("""\
        import tensorflow as tf
        r = tf.random_uniform([2, 3])
        sess = tf.InteractiveSession()
        print(r.eval().shape)
        """, True, "equal"),
    # x.eval() is sess.run(x)
    "eval": ("""\
        import numpy as np
        import tensorflow as tf
        sess = tf.InteractiveSession()
        logits = tf.constant(np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]))
        labels = tf.constant(np.array([1, 2]))
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        print(loss.eval(), tf.reduce_mean(loss).eval())
        """, True, "equal"),
    # code written against tensorflow.compat.v1: positional calls are (labels, logits)
    "compat_v1": ("""\
        import numpy as np
        import tensorflow.compat.v1 as tf
        tf.disable_v2_behavior()
        logits = tf.constant(np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]))
        onehot = tf.constant(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        dense = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
        sparse = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant([1, 2]), logits)
        with tf.Session() as sess:
            print(sess.run([dense, sparse]))
        """, False, "equal"),
    # tf.losses.* registers the loss: a discarded call, the collection read back
    "loss_collection": ("""\
        import numpy as np
        import tensorflow as tf
        logits = tf.constant(np.array([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]))
        onehot = tf.constant(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        tf.losses.softmax_cross_entropy(onehot, logits)
        tf.losses.sparse_softmax_cross_entropy(tf.constant([1, 2]), logits)
        total = tf.losses.get_total_loss()
        with tf.Session() as sess:
            print(sess.run([total, tf.add_n(tf.losses.get_losses())]))
        """, False, "equal"),
    # the long tail, through TensorFlow's own tables: same functions or TF1's own
    "long_tail": ("""\
        import numpy as np
        import tensorflow as tf
        x = tf.constant(np.array([[1.0, 4.0, 2.0], [3.0, 0.5, 6.0]]))
        a = tf.div(x, 2.0)
        b = tf.to_float(tf.argmax(x, dimension=1))
        c = tf.reduce_sum(x, reduction_indices=1, keep_dims=True)
        d = tf.squared_difference(x, 1.0)
        e = tf.log(tf.nn.softmax(x, dim=0))
        f = tf.nn.softmax_cross_entropy_with_logits_v2(labels=tf.nn.softmax(x), logits=x)
        sess = tf.Session()
        print(sess.run([a, b, c, d, e, f]))
        """, True, "equal"),
    # a notebook's code cells with IPython syntax, joined (magics become `pass`)
    "notebook": ("""\
        import numpy as np
        import tensorflow as tf
        %matplotlib inline
        x = tf.constant(np.array([1.0, 2.0]))
        with tf.Session() as sess:
            %time value = sess.run(x)
            print("value: %s"
                  % value)
        if True:
            !echo shell
        """, True, "equal"),
}


#: real TF1 code (tests/fixtures/migrate/corpus, sources in SOURCES.md)
CORPUS = Path(__file__).parent / "fixtures" / "migrate" / "corpus"
PROGRAMS.update({
    "aymericdamien_helloworld": ((CORPUS / "aymericdamien_helloworld.py").read_text(), True,
                                 "equal"),
    "aymericdamien_basic_operations": (
        (CORPUS / "aymericdamien_basic_operations.py").read_text(), False, "equal"),
})


def _tf1(code: str) -> str:
    """The original as TF1 ran it: ``tensorflow`` is ``tensorflow.compat.v1``."""
    return code.replace("import tensorflow as tf\n", "import tensorflow.compat.v1 as tf\n")


def _python(code: str) -> str:
    """IPython lines as ``pass`` (what is left of them in a program)."""
    masked, _ = mask(code)
    return re.sub(r"_xent_magic_\d+\(.*\)", "pass", masked)


DRIVER = textwrap.dedent("""\
    import contextlib, io, json, sys
    import tensorflow as tf
    if sys.argv[2] == "tf1":
        tf.compat.v1.disable_v2_behavior()
    programs = json.load(open(sys.argv[1]))
    results = {}
    for name, code in programs:
        out = io.StringIO()
        graph = tf.compat.v1.executing_eagerly_outside_functions() is False
        try:
            with contextlib.redirect_stdout(out):
                if graph or "disable_" in code:
                    tf.compat.v1.disable_eager_execution()
                    with tf.Graph().as_default():
                        exec(compile(code, name, "exec"), {"__name__": "__main__"})
                else:
                    exec(compile(code, name, "exec"), {"__name__": "__main__"})
            results[name] = {"stdout": out.getvalue(), "error": None}
        except Exception as error:
            results[name] = {"stdout": out.getvalue(),
                             "error": f"{type(error).__name__}: {error}"[:500]}
    print("RESULT " + json.dumps(results))
    """)


@pytest.fixture(scope="module")
def migrated() -> dict[str, tuple[str, list[str]]]:
    out = {}
    for name, (code, _, _) in PROGRAMS.items():
        source = textwrap.dedent(code)
        if name == "notebook":  # migrated as a notebook, then run without IPython
            from xent.migration.notebooks import migrate_notebook

            cells = [{"cell_type": "code", "metadata": {}, "outputs": [],
                      "execution_count": None, "source": source}]
            data = json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                               "nbformat_minor": 4}).encode()
            new, findings, _ = migrate_notebook(data, "tf2", "nb.ipynb")
            after = json.loads(new)["cells"][0]["source"]
            after = "".join(after) if isinstance(after, list) else after
        else:
            result = migrate_source(source)
            after, findings = str(result.after), result.findings
        out[name] = (after, [f"{f.line}: {f.rule}: {f.note}" for f in findings])
    return out


@pytest.fixture(scope="module")
def runs(migrated, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("semantics")
    (tmp / "driver.py").write_text(DRIVER)
    originals = [(n, _python(_tf1(textwrap.dedent(c)))) for n, (c, _, _) in PROGRAMS.items()]
    new = sorted(((n, _python(code)) for n, (code, _) in migrated.items()),
                 key=lambda item: bool(GRAPH.search(item[1])))  # eager ones first
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    started = {}
    for mode, programs in (("tf1", originals), ("tf2", new)):
        (tmp / f"{mode}.json").write_text(json.dumps(programs))
        started[mode] = subprocess.Popen(
            [sys.executable, str(tmp / "driver.py"), str(tmp / f"{mode}.json"), mode],
            cwd=tmp, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = {}
    for mode, process in started.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and "RESULT " in out, err[-3000:]
        results[mode] = json.loads(out.split("RESULT ", 1)[1])
    return results


def numbers(text: str) -> np.ndarray:
    return np.array([float(n) for n in NUMBER.findall(text)])


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_migrated_program_prints_what_tf1_printed(name: str, runs, migrated) -> None:
    _, eager, compare = PROGRAMS[name]
    after, report = migrated[name]
    tf1, tf2 = runs["tf1"][name], runs["tf2"][name]
    assert tf1["error"] is None, tf1["error"]
    assert tf2["error"] is None, (tf2["error"], after)
    # eager where that keeps the meaning, else graph code that says why
    assert ("Session" not in after) is eager, after
    if not eager and name != "compat_v1":
        assert any(": graph-code: " in r for r in report), report
    if compare == "equal":
        assert re.sub(NUMBER, "#", tf2["stdout"]) == re.sub(NUMBER, "#", tf1["stdout"])
        np.testing.assert_allclose(numbers(tf2["stdout"]), numbers(tf1["stdout"]),
                                   rtol=1e-6)
    else:  # random: every printed draw differs from the others, in TF1 and after
        for stdout in (tf1["stdout"], tf2["stdout"]):
            draws = [tuple(numbers(line)) for line in stdout.splitlines() if line.strip()]
            assert len(draws) >= 2 and len(set(draws)) == len(draws), stdout


def test_compat_v1_and_library_code_gets_no_process_wide_switch(migrated) -> None:
    assert migrated["compat_v1"][0] == textwrap.dedent(PROGRAMS["compat_v1"][0])
    library = migrate_source(textwrap.dedent("""\
        import tensorflow as tf
        def model(x):
            w = tf.get_variable("w", [3, 3])
            return tf.matmul(tf.placeholder(tf.float32), w)
        """))
    assert "disable_eager_execution" not in str(library.after)
    assert "tf.compat.v1.get_variable" in str(library.after)
    assert any("opens no Session" in f.note for f in library.findings)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.py")), ids=lambda p: p.name)
def test_real_code_migrates_idempotently(path: Path) -> None:
    once = migrate_source(path.read_bytes()).after
    assert migrate_source(once).after == once


def test_compat_v1_real_code_is_left_as_it_is() -> None:
    code = (CORPUS / "t2t_metrics_excerpt.py").read_bytes()
    assert migrate_source(code).after == code  # tf.losses there is compat.v1's


def test_loss_collection_calls_stay_tf1_losses(migrated) -> None:
    after, _ = migrated["loss_collection"]
    assert after.count("tf.compat.v1.losses.") == 4
    assert "reduce_mean" not in after
