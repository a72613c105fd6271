"""The ``xent`` command: argument parsing and dispatch to the modules that do the work.

Bad usage or input gives one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn


class UsageError(Exception):
    """Bad usage or input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xent",
        description="Softmax cross-entropy that gives the same answer on every framework.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser("demo", help="the worked example on every installed backend")
    demo.add_argument("--backend", action="append", metavar="NAME",
                      help="only this backend (repeatable); default: every installed one")

    conf = commands.add_parser("conformance", help="run the conformance suite")
    conf.add_argument("--backend", action="append", metavar="NAME",
                      help="only this backend (repeatable); default: every installed one")
    conf.add_argument("--dtype", action="append", metavar="DTYPE",
                      help="only this dtype (repeatable): float16, bfloat16, float32, float64")
    conf.add_argument("--case", action="append", metavar="CASE",
                      help="only this case (repeatable); see --list")
    conf.add_argument("--import", dest="imports", action="append", default=[],
                      metavar="MODULE", help="import MODULE first (it registers a backend)")
    conf.add_argument("--json", metavar="PATH", help="also write every result to PATH as JSON")
    conf.add_argument("--list", action="store_true", help="list the cases and exit")
    conf.add_argument("--twins", action="store_true",
                      help="check the framework twins (xent.compat) against their native "
                           "functions and across backends, instead of the core catalog")

    mapping = commands.add_parser("map", help="print the TF1 -> TF2 -> xent mapping")
    mapping.add_argument("--format", choices=("table", "markdown", "json"), default="table")

    migrate = commands.add_parser("migrate", help="rewrite TF1 source for TF2 or xent")
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
    try:
        module = importlib.import_module(_COMMANDS[args.command])
        return int(module.main(args) or 0)
    except (UsageError, ValueError, TypeError, ImportError, OSError) as error:
        return _fail(f"xent {args.command}: {error}")
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    print(message.splitlines()[0] if message else "xent: error", file=sys.stderr)
    return 2


def _version() -> str:
    from xent import __version__

    return f"xent {__version__}"
