"""The ``xent`` command: argument parsing and dispatch to the modules that do the work.

Bad usage or input gives one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn


class UsageError(Exception):
    """Bad usage or input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    verbosity = _Parser(add_help=False)
    verbosity.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="let the frameworks print their start-up logs and warnings")
    parser = _Parser(
        prog="xent", parents=[verbosity],
        description="Softmax cross-entropy that gives the same answer on every framework.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    quiet = [verbosity]  # -v after the command too: `xent demo -v`

    demo = commands.add_parser("demo", parents=quiet,
                               help="the worked example on every installed backend")
    demo.add_argument("--backend", action="append", metavar="NAME",
                      help="only this backend (repeatable); default: every installed one")

    conf = commands.add_parser("conformance", parents=quiet, help="run the conformance suite")
    conf.add_argument("--backend", action="append", metavar="NAME",
                      help="only this backend (repeatable); default: every installed one")
    conf.add_argument("--dtype", action="append", metavar="DTYPE",
                      help="only this dtype (repeatable): float16, bfloat16, float32, float64")
    conf.add_argument("--case", action="append", metavar="CASE",
                      help="only this case (repeatable); see --list")
    conf.add_argument("--import", dest="imports", action="append", default=[],
                      metavar="MODULE", help="import MODULE first (it registers a backend)")
    conf.add_argument("--json", metavar="PATH", help="also write every result to PATH as JSON")
    conf.add_argument("--mode", action="append", metavar="MODE",
                      help="only this mode (repeatable), e.g. eager, jit, vmap, compile; "
                           "default: every mode of each backend")
    conf.add_argument("--list", action="store_true", help="list the cases and exit")
    conf.add_argument("--twins", action="store_true",
                      help="check the framework twins (xent.compat) against their native "
                           "functions and across backends, instead of the core catalog")

    mapping = commands.add_parser("map", parents=quiet,
                                  help="print the TF1 -> TF2 -> xent mapping")
    mapping.add_argument("--format", choices=("table", "markdown", "json"), default="table")

    migrate = commands.add_parser("migrate", parents=quiet,
                                  help="rewrite TF1 source for TF2 or xent")
    migrate.add_argument("paths", nargs="+", metavar="PATH",
                         help="Python files, notebooks or directories")
    migrate.add_argument("--to", choices=("tf2", "xent"), default="tf2")
    migrate.add_argument("--write", action="store_true", help="rewrite the files in place")
    migrate.add_argument("--check", action="store_true",
                         help="exit 1 when anything would change, else 0")
    return parser


#: command -> module whose ``main(args) -> int`` runs it
_COMMANDS = {
    "demo": "xent._demo",
    "conformance": "xent.conformance.cli",
    "map": "xent.migration.cli",
    "migrate": "xent.migration.cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as error:
        return _fail(str(error))
    if not getattr(args, "verbose", False):
        _quiet_frameworks()
    try:
        module = importlib.import_module(_COMMANDS[args.command])
        return int(module.main(args) or 0)
    except (UsageError, ValueError, TypeError, ImportError, OSError) as error:
        return _fail(f"xent {args.command}: {error}")
    except KeyboardInterrupt:
        return 130


def _quiet_frameworks() -> None:
    """No framework start-up noise (TensorFlow's C++ log lines, Python warnings) unless
    ``-v``; an explicit ``TF_CPP_MIN_LOG_LEVEL`` in the environment wins for the lines TF logs
    after its import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also its non-fatal E lines
    import warnings

    from xent._quiet import quiet_imports

    quiet_imports(("tensorflow",))

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _fail(message: str) -> int:
    print(message.splitlines()[0] if message else "xent: error", file=sys.stderr)
    return 2


def _version() -> str:
    from xent import __version__

    return f"xent {__version__}"
