"""Notebooks: IPython syntax anywhere (line and cell magics at any indentation, ``!shell``,
help, ``%`` continuing an expression) is read, kept, and never makes a false refusal."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("libcst", reason="xent migrate needs libcst (pip install 'xent[migrate]')")

from xent.migration.ipython import mask, restore  # noqa: E402
from xent.migration.notebooks import migrate_notebook  # noqa: E402


def notebook(*cells: str) -> bytes:
    return json.dumps({"cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": cell.splitlines(keepends=True)} for cell in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 4}, indent=1).encode()


def migrated(*cells: str) -> tuple[list[str], list[str]]:
    after, findings, _ = migrate_notebook(notebook(*cells), "tf2", "nb.ipynb")
    again, _, _ = migrate_notebook(after, "tf2", "nb.ipynb")
    assert again == after  # idempotent
    sources = ["".join(c["source"]) for c in json.loads(after)["cells"]]
    return sources, [f"{f.cell}:{f.line}: {f.rule}: {f.note}" for f in findings]


def python(cell: str) -> str:
    """A cell as Python: its IPython lines masked (must compile)."""
    masked, _ = mask(cell)
    compile(masked, "<cell>", "exec")
    return masked


def test_percent_continuing_an_expression_is_python() -> None:
    cells, _ = migrated("import tensorflow as tf\n"
                        "print('%d of %d'\n"
                        "      % (1, 2))\n"
                        "x = (3\n"
                        "%2)\n"
                        "y = tf.log(2.0)\n")
    assert "% (1, 2))" in cells[0] and "%2)" in cells[0]
    assert "tf.math.log(2.0)" in cells[0]


def test_a_block_whose_only_statement_is_a_magic() -> None:
    cells, _ = migrated("import tensorflow as tf\n"
                        "for i in range(2):\n"
                        "    %time f(i)\n"
                        "if True:\n"
                        "    !echo hi\n"
                        "y = tf.log(2.0)\n")
    assert "    %time f(i)\n" in cells[0] and "    !echo hi\n" in cells[0]
    python(cells[0])


def test_magics_in_an_unwrapped_session_block_follow_its_indentation() -> None:
    cells, report = migrated(
        "import numpy as np\nimport tensorflow as tf\nx = tf.constant(np.ones(2))\n",
        "with tf.Session() as sess:\n"
        "    %time value = sess.run(x)\n"
        "    %matplotlib inline\n"
        "    print(value)\n")
    assert cells[1] == ("%time value = x.numpy()\n"
                        "%matplotlib inline\n"
                        "print(value)\n")
    python(cells[1])
    assert any("1:2: session:" in r for r in report), report


def test_a_magic_that_uses_the_session_keeps_it() -> None:
    cells, report = migrated(
        "import numpy as np\nimport tensorflow as tf\nx = tf.constant(np.ones(2))\n"
        "sess = tf.Session()\n",
        "%timeit -n 3 sess.run(x)\n"
        "print(sess.run(x))\n")
    assert cells[1] == "%timeit -n 3 sess.run(x)\nprint(sess.run(x))\n"
    assert "tf.compat.v1.Session()" in cells[0]
    assert any("graph-code" in r for r in report)


@pytest.mark.parametrize("line", [
    "!pip install tensorflow", "files = !ls", "x = %sx ls", "tf.nn.softmax?",
    "??tf.nn", "%load_ext autoreload", "%autoreload 2",
    "%tensorflow_version 1.x",
])
def test_ipython_lines_are_kept_verbatim(line: str) -> None:
    cells, _ = migrated("import tensorflow as tf\n", f"if True:\n    y = tf.log(2.0)\n{line}\n")
    assert cells[1] == f"if True:\n    y = tf.math.log(2.0)\n{line}\n"


def test_comments_and_strings_ending_in_a_question_mark_are_python() -> None:
    code = "x = 1  # why?\ns = 'what?'\n"
    assert mask(code)[0] == code


def test_cell_magics() -> None:
    cells, _ = migrated("import tensorflow as tf\n",
                        "%%time\ny = tf.log(2.0)\n",
                        "%%bash\necho tf.log\n")
    assert cells[1] == "%%time\ny = tf.math.log(2.0)\n"
    assert cells[2] == "%%bash\necho tf.log\n"


def test_restore_puts_every_magic_back() -> None:
    code = "for i in x:\n    %time f(i)\n    !ls {i}\n    z = %sx ls\n"
    masked, magics = mask(code)
    assert not re.search(r"^\s*[%!]", masked, re.MULTILINE)
    assert restore(masked, magics) == code
