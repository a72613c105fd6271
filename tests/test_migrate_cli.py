"""``xent migrate`` and ``xent map`` on files: diff, report, --write, --check, exit
statuses, directories, notebooks, encodings and line endings."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

pytest.importorskip("libcst", reason="xent migrate needs libcst (pip install 'xent[migrate]')")

from xent.cli import main  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "migrate"
TF1 = "import tensorflow as tf\ny = tf.log(x)\n"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err
    return run


def test_default_prints_a_diff_and_a_report_and_writes_nothing(tmp_path: Path, run) -> None:
    path = tmp_path / "old.py"
    path.write_text(TF1)
    status, out, err = run("migrate", str(path))
    assert status == 0
    assert path.read_text() == TF1
    assert f"--- a/{str(path).lstrip('/')}" in out
    assert "-y = tf.log(x)\n+y = tf.math.log(x)\n" in out
    assert f"{path}:2: math-log: tf.log -> tf.math.log" in err.splitlines()
    assert err.splitlines()[-1] == "xent migrate: would rewrite 1 of 1 file(s)"


def test_check_exits_1_when_something_would_change(tmp_path: Path, run) -> None:
    (tmp_path / "old.py").write_text(TF1)
    (tmp_path / "new.py").write_text("import tensorflow as tf\ny = tf.math.log(x)\n")
    assert run("migrate", "--check", str(tmp_path / "old.py"))[0] == 1
    assert run("migrate", "--check", str(tmp_path / "new.py"))[0] == 0


def test_write_is_atomic_keeps_permissions_and_is_idempotent(tmp_path: Path, run) -> None:
    path = tmp_path / "old.py"
    path.write_text(TF1)
    path.chmod(0o751)
    status, out, err = run("migrate", "--write", str(path))
    assert status == 0 and out == ""
    assert path.read_text() == "import tensorflow as tf\ny = tf.math.log(x)\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.py"]  # no temporary left
    before = path.stat().st_mtime_ns
    status, out, err = run("migrate", "--write", "--check", str(path))
    assert status == 0 and path.stat().st_mtime_ns == before
    assert "rewrote 0 of 1" in err


def test_write_through_a_symlink_rewrites_the_target(tmp_path: Path, run) -> None:
    real = tmp_path / "real.py"
    real.write_text(TF1)
    link = tmp_path / "link.py"
    link.symlink_to(real)
    run("migrate", "--write", str(link))
    assert link.is_symlink() and "tf.math.log" in real.read_text()


def test_directories_are_walked(tmp_path: Path, run) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(TF1)
    (tmp_path / "pkg" / "sub" / "b.py").write_text(TF1)
    (tmp_path / "pkg" / "notes.txt").write_text(TF1)
    (tmp_path / ".hidden" / "c.py").write_text(TF1)
    status, out, err = run("migrate", "--write", str(tmp_path))
    assert status == 0
    assert "tf.math.log" in (tmp_path / "pkg" / "a.py").read_text()
    assert "tf.math.log" in (tmp_path / "pkg" / "sub" / "b.py").read_text()
    assert (tmp_path / "pkg" / "notes.txt").read_text() == TF1
    assert (tmp_path / ".hidden" / "c.py").read_text() == TF1
    assert "rewrote 2 of 2" in err


def test_unparseable_file_is_reported_left_untouched_and_exits_2(tmp_path: Path, run) -> None:
    bad = tmp_path / "bad.py"
    bad.write_bytes(b"import tensorflow as tf\nprint 'TF1 era'\n")
    good = tmp_path / "good.py"
    good.write_text(TF1)
    status, out, err = run("migrate", "--write", str(bad), str(good))
    assert status == 2
    assert bad.read_bytes() == b"import tensorflow as tf\nprint 'TF1 era'\n"
    assert "tf.math.log" in good.read_text()  # the others are still migrated
    line = next(x for x in err.splitlines() if "parse-error" in x)
    assert line.startswith(f"{bad}:2: parse-error: cannot parse, left untouched")


def test_undecodable_file_is_a_parse_error(tmp_path: Path, run) -> None:
    bad = tmp_path / "bad.py"
    bad.write_bytes(b"import tensorflow as tf\nx = '\xff'\n")
    status, _, err = run("migrate", str(bad))
    assert status == 2 and f"{bad}:2: parse-error:" in err


def test_missing_path_is_bad_usage(tmp_path: Path, run) -> None:
    status, out, err = run("migrate", str(tmp_path / "nope.py"))
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1 and "no such file" in err


@pytest.mark.parametrize("data", [
    pytest.param(b"import tensorflow as tf\r\n\r\ny = tf.log(x)  # crlf\r\n", id="crlf"),
    pytest.param(b"\xef\xbb\xbfimport tensorflow as tf\ny = tf.log(x)\n", id="bom"),
    pytest.param("# -*- coding: latin-1 -*-\nimport tensorflow as tf\n"
                 "y = tf.log(x)  # caf\xe9\n".encode("latin-1"), id="latin-1"),
])
def test_encoding_bom_and_line_endings_survive(tmp_path: Path, run, data: bytes) -> None:
    path = tmp_path / "old.py"
    path.write_bytes(data)
    run("migrate", "--write", str(path))
    assert path.read_bytes() == data.replace(b"tf.log", b"tf.math.log")


def test_files_with_nothing_to_migrate_are_left_byte_for_byte(tmp_path: Path, run) -> None:
    data = b"# -*- coding: latin-1 -*-\r\nimport torch\r\nx = 'caf\xe9'  \r\n\n\n"
    path = tmp_path / "keep.py"
    path.write_bytes(data)
    before = path.stat().st_mtime_ns
    assert run("migrate", "--write", "--check", str(path))[0] == 0
    assert path.read_bytes() == data and path.stat().st_mtime_ns == before


def test_notebook_code_cells_are_migrated_outputs_and_markdown_kept(tmp_path: Path,
                                                                    run) -> None:
    path = tmp_path / "seed.ipynb"
    shutil.copy(FIXTURES / "seed_tf1.ipynb", path)
    before = json.loads(path.read_text(encoding="utf-8"))
    status, out, err = run("migrate", "--write", str(path))
    assert status == 0
    after = json.loads(path.read_text(encoding="utf-8"))
    assert len(after["cells"]) == len(before["cells"])
    for old, new in zip(before["cells"], after["cells"]):
        assert {k: v for k, v in old.items() if k != "source"} == {
            k: v for k, v in new.items() if k != "source"}  # outputs, counts, metadata
        if old["cell_type"] != "code":
            assert new == old
    code = ["".join(cell["source"]) for cell in after["cells"]]
    assert code[1] == "%matplotlib inline\nimport tensorflow as tf\nimport numpy as np"
    assert code[2] == ""
    assert code[3].endswith("y_hat_softmax.numpy()")
    assert "labels=tf.stop_gradient(y_true), logits=y_hat" in code[5]
    assert code[5].endswith("print([loss_1.numpy(), loss_2.numpy()])\n!echo done")
    assert code[6] == "%%bash\necho tf.log is not Python here"
    assert f"{path}:cell_6:2: argument-order:" in err
    assert f"{path}:cell_3:1: session:" in err
    # the same JSON layout (indent 1, keys sorted, non-ASCII kept, final newline)
    assert path.read_text(encoding="utf-8") == json.dumps(
        after, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert run("migrate", "--check", str(path))[0] == 0  # idempotent


def test_notebook_diff_names_the_cells(tmp_path: Path, run) -> None:
    path = tmp_path / "seed.ipynb"
    shutil.copy(FIXTURES / "seed_tf1.ipynb", path)
    status, out, _ = run("migrate", "--check", str(path))
    assert status == 1
    assert f"+++ b/{str(path).lstrip('/')}:cell_4" in out
    assert "-sess.run(y_hat_softmax)\n+y_hat_softmax.numpy()" in out
    assert path.read_bytes() == (FIXTURES / "seed_tf1.ipynb").read_bytes()


def test_broken_notebook_cell_is_reported_with_its_cell(tmp_path: Path, run) -> None:
    notebook = json.loads((FIXTURES / "seed_tf1.ipynb").read_text(encoding="utf-8"))
    notebook["cells"][3]["source"] = ["x = (\n"]
    path = tmp_path / "bad.ipynb"
    data = json.dumps(notebook, indent=1).encode()
    path.write_bytes(data)
    status, _, err = run("migrate", "--write", str(path))
    assert status == 2 and path.read_bytes() == data
    assert f"{path}:cell_4:1: parse-error:" in err


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_map_prints_every_row(run, fmt: str) -> None:
    status, out, _ = run("map", "--format", fmt)
    assert status == 0
    for name in ("tf.nn.softmax_cross_entropy_with_logits_v2", "tf.losses.softmax_cross_entropy",
                 "tf.log", "tf.reduce_sum", "tf.reduce_mean", "tf.Session"):
        assert name in out
    if fmt == "json":
        rows = json.loads(out)
        assert {"tf1", "tf2", "compat_v2", "xent", "change"} <= set(rows[0])
    if fmt == "markdown":
        assert out.splitlines()[0] == "| TF1 | TF2 | tf.compat.v2 | xent | What changes |"


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "old.py"
    path.write_text(TF1)
    done = subprocess.run([sys.executable, "-m", "xent", "migrate", "--check", str(path)],
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert done.returncode == 1 and "tf.math.log" in done.stdout


def test_map_works_without_libcst_and_migrate_says_what_is_missing(tmp_path: Path) -> None:
    import subprocess
    import sys

    blocked = "import sys; sys.modules['libcst'] = None; from xent.cli import main; "
    done = subprocess.run([sys.executable, "-c", blocked + "sys.exit(main(['map']))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "tf.nn.softmax" in done.stdout
    path = tmp_path / "old.py"
    path.write_text(TF1)
    done = subprocess.run(
        [sys.executable, "-c", blocked + f"sys.exit(main(['migrate', {str(path)!r}]))"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "pip install 'xent[migrate]'" in done.stderr
