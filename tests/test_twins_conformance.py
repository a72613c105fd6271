"""``xent conformance --twins``: the twins' matrix and JSON records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xent import cli
from xent.conformance import twins


def test_twins_conformance_passes_and_reports(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "twins.json"
    assert cli.main(["conformance", "--twins", "--backend", "numpy", "--backend", "torch",
                     "--json", str(path)]) == 0
    out = capsys.readouterr().out
    for name in twins.case_names():
        assert name in out
    document = json.loads(path.read_text())
    assert document["passed"] is True
    against = {r["against"] for r in document["records"]}
    assert {"native torch", "native optax", "native keras", "native tensorflow"} <= against
    cases = {r["case"] for r in document["records"]}
    assert cases == set(twins.case_names())
