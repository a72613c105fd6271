"""``xent conformance``: run the suite and print the case x backend/mode matrix.

Exit status: 0 when every check passes, 1 on any failure (including a backend that does
not load), 2 on bad usage (unknown backend, case or dtype; a module that does not import).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Any

import xent
from xent.backends import Backend
from xent.cli import UsageError
from xent.conformance import cases, report, runner


def main(args: argparse.Namespace) -> int:
    _import_modules(args.imports)
    if args.list:
        width = max(len(n) for n in cases.case_names())
        for case in cases.CATALOG:
            print(f"{case.name.ljust(width)}  {case.doc}")
        return 0
    if getattr(args, "twins", False):
        return _twins(args)
    names = _choose("case", args.case, cases.case_names())
    dtypes = _choose("dtype", args.dtype, list(cases.DTYPES))
    backends, records = _backends(args.backend)
    targets = _targets(backends, getattr(args, "mode", None))
    progress = report.Progress(len(names) * len(dtypes) * len(targets))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # framework chatter would break up the matrix
            records += runner.run_all(targets, names, dtypes, progress.step)
    finally:
        progress.close()
    pairs = [(b.name, mode) for b, mode in targets]
    print(report.matrix(records, pairs, names))
    print()
    print(report.LEGEND)
    skipped = report.not_measured(records)
    if skipped:
        print(skipped)
    if len(pairs) > 1:
        print()
        print("Pairwise agreement (worst over cases, dtypes and quantities; tolerance: the sum "
              "of both targets' tolerances):")
        print(report.pairwise_matrix(records, pairs))
    failed = report.failures(records)
    if failed:
        print()
        print(failed)
    print()
    print(report.summary(records))
    if args.json:
        report.write_json(args.json, records, [_describe(b, mode) for b, mode in targets])
    return 1 if any(r.passed is False for r in records) else 0


def _twins(args: argparse.Namespace) -> int:
    """``--twins``: the framework twins' matrix (see :mod:`xent.conformance.twins`)."""
    from xent.conformance import twins

    backends, records = _backends(args.backend)
    every = {b.name: b for b in backends}
    for name in ("numpy", "torch", "tensorflow", "jax"):  # natives run on their framework
        if name not in every and name in xent.backends.available():
            every[name] = xent.backends.get(name)
    targets = _targets(backends, getattr(args, "mode", None))
    progress = report.Progress(len(twins.CATALOG) * len(targets))
    try:
        records += twins.run_all(targets, every, progress.step)
    finally:
        progress.close()
    pairs = [(b.name, mode) for b, mode in targets]
    print(twins.matrix(records, pairs))
    print()
    print("Each cell: the twin against its native function (where installed; else against "
          "the twin on NumPy), loss and d/dlogits; the worst error as a fraction of "
          f"{twins.TOLERANCE:g} eps*scale (float32).")
    failed = twins.failures(records)
    if failed:
        print()
        print(failed)
    print()
    print(report.summary(records))
    if args.json:
        report.write_json(args.json, records, [_describe(b, mode) for b, mode in targets])
    return 1 if any(r.passed is False for r in records) else 0


def _targets(backends: list[Backend], modes: list[str] | None) -> list[tuple[Backend, str]]:
    """Every (backend, mode), or those of the ``--mode`` options (each must exist)."""
    every = [(b, mode) for b in backends for mode in runner.modes_of(b)]
    if not modes:
        return every
    known = sorted({mode for _, mode in every})
    unknown = [m for m in modes if m not in known]
    if unknown:
        raise UsageError(f"unknown mode {unknown[0]!r}; the backends chosen have "
                         f"{', '.join(known)}")
    return [(b, mode) for b, mode in every if mode in modes]


def _import_modules(modules: list[str]) -> None:
    """Import each ``--import`` module (from the current directory too, as ``python -m``)."""
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - reported as one line, exit 2
            raise UsageError(f"--import {module}: {type(error).__name__}: {error}") from None


def _choose(what: str, requested: list[str] | None, known: list[str]) -> list[str]:
    if not requested:
        return known
    unknown = [r for r in requested if r not in known]
    if unknown:
        hint = " (see xent conformance --list)" if what == "case" else ""
        choices = hint or f"; choose from {', '.join(known)}"
        raise UsageError(f"unknown {what} {unknown[0]!r}{choices}")
    return list(dict.fromkeys(requested))


def _backends(requested: list[str] | None) -> tuple[list[Backend], list[runner.Record]]:
    """The backends to run, and a failure record for each installed one that does not load.

    An explicitly requested backend that is unknown or whose framework is missing is bad
    usage (exit 2)."""
    if requested:
        chosen: list[Backend] = []
        for name in dict.fromkeys(requested):
            try:
                backend = xent.backends.get(name)
            except ValueError as error:
                raise UsageError(str(error)) from None
            except ImportError as error:
                raise UsageError(f"backend {name!r} does not load: {error}") from None
            if backend not in chosen:
                chosen.append(backend)
        return chosen, []
    loaded, failed = [], []
    for name in xent.backends.available():
        try:
            loaded.append(xent.backends.get(name))
        except Exception as error:  # noqa: BLE001 - an installed backend that breaks fails
            failed.append(runner.Record(name, "load", "load", "-", "load", False,
                                        detail=f"does not load: {runner._describe(error)}"))
    return loaded, failed


def _describe(backend: Backend, mode: str) -> dict[str, Any]:
    return {"backend": backend.name, "mode": mode, "dtypes": list(backend.dtypes),
            "tracing": mode in backend.tracing_modes, "autodiff": bool(backend.has_autodiff)}
