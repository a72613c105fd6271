"""The ``xent`` command: the demo's numbers, and one-line errors with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import requested_backends


def xent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xent", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_demo_on_every_requested_backend() -> None:
    backends = requested_backends()
    result = xent_cli("demo", *[a for name in backends for a in ("--backend", name)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Training instance 1 | 0.227863   | 0.61939586 | 0.15274114" in out
    assert "Training instance 2 | 0.49674623 | 0.20196195 | 0.30129182" in out
    modes = {"numpy": ["eager"], "torch": ["eager"], "tensorflow": ["eager", "function", "graph"],
             "jax": ["eager", "jit"]}
    table = [line.split() for line in out.splitlines()]
    for name in backends:
        for mode in modes.get(name, []):
            row = next(r for r in table if r[:2] == [name, mode])
            assert row[3:5] == ["0.4790107", "1.19967598"], row
            assert row[5].startswith("0.83934333897877"), row
    masked = [r for r in table if r and r[0] in backends and r[-1] == "0.3132617"]
    assert [r[0] for r in masked] == backends
    assert all(r[-2] == "nan" for r in masked)  # the native call, for contrast
    assert "largest disagreement" in out


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "xent: the following arguments are required: COMMAND"),
        (["frobnicate"], "xent: argument COMMAND: invalid choice: 'frobnicate'"),
        (["demo", "--backend", "nope"], "xent demo: backend: unknown backend 'nope'"),
        (["map", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    result = xent_cli(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["demo", "--backend", "numpy", "--backend", "tensorflow"],
                                     ["map"], ["conformance", "--list"],
                                     # TF logs an E line for a boolean `where` on AVX-512 CPUs
                                     ["conformance", "--backend", "tensorflow", "--case",
                                      "opt_rank3_axis1", "--dtype", "float32", "--mode",
                                      "eager"]])
def test_no_framework_log_noise_unless_verbose(command: list[str]) -> None:
    if "conformance" in command and "tensorflow" in command:
        if "tensorflow" not in requested_backends():
            pytest.skip("tensorflow is not among the requested backends (XENT_TEST_BACKENDS)")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-m", "xent", *command], capture_output=True,
                           text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    if "tensorflow" in command and "tensorflow" in requested_backends():
        loud = subprocess.run([sys.executable, "-m", "xent", *command, "-v"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert loud.returncode == 0
        assert "cpu_feature_guard" in loud.stderr  # TF's C++ start-up line, shown with -v


def test_a_quiet_import_that_fails_still_shows_what_it_wrote(tmp_path) -> None:
    """The silenced import keeps its C-level stderr only while it succeeds: a failing import
    replays it, so the reason is never lost; the import's own exception still propagates."""
    (tmp_path / "noisy_pkg").mkdir()
    (tmp_path / "noisy_pkg" / "__init__.py").write_text(
        "import os\nos.write(2, b'C-level line\\n')\n"
        "if os.environ.get('NOISY_FAIL'):\n    raise ImportError('broken build')\n")
    script = ("import sys; from xent._quiet import quiet_imports\n"
              "quiet_imports(['noisy_pkg'])\n"
              "import importlib.util; importlib.util.find_spec('noisy_pkg')\n"
              "import noisy_pkg; print('imported')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    ok = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "imported\n", "")
    bad = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**env, "NOISY_FAIL": "1"})
    assert bad.returncode == 1
    assert bad.stderr.startswith("C-level line\n") and "ImportError: broken build" in bad.stderr
