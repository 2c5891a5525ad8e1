"""The ``desra`` command: a thin layer over the library.

Each command group lives in its own module ``desra/cli/cmd_<name>.py`` exposing
``register(subparsers)``; the list below is written out by hand. Command modules import heavy
libraries only inside their handlers, so ``desra --help`` stays fast.

Errors: a :class:`~desra.core.errors.DesraError` is printed as one line on stderr with exit code 2;
anything else as one line with exit code 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "sr",
    "models",
    "serve",
    "bench",
    "detect",
    "eval",
    "calibrate",
    "zoo",
    "set",
    "finetune",
    "evaluate_run",
    "jobs",
    "fingerprint",
    "attribute",
    "watch",
)


class Parser(argparse.ArgumentParser):
    """An argument parser that takes only flags spelled out in full.

    argparse accepts any unambiguous prefix (``--ou`` for ``--out``) by default, which let a job
    parameter named ``ou`` override a checked ``out``. Sub-parsers are made of the parent's class,
    so every desra command inherits this.
    """

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with every command group registered (or only the modules in ``commands``)."""
    from desra import __version__

    parser = Parser(
        prog="desra",
        description="Detect, delete and attribute GAN super-resolution artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"desra {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands or COMMAND_MODULES:
        module = importlib.import_module(f"desra.cli.cmd_{name}")
        module.register(subparsers)
    return parser


def _named_command(argv: Sequence[str]) -> tuple[str] | None:
    """(module,) of the command ``argv`` names first, or None (help, version, unknown: every command).

    Registering one command instead of all of them keeps start-up short for ``desra detect`` on a
    single pair, where start-up is a good part of the run.
    """
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or any(a in ("-h", "--help", "--version") for a in argv[: list(argv).index(first)]):
        return None
    module = first.replace("-", "_")
    return (module,) if module in COMMAND_MODULES else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``desra`` console script; returns the exit code."""
    from desra.core.errors import DesraError

    parser = build_parser(_named_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("desra: interrupted", file=sys.stderr)
        return 130
    except DesraError as error:
        if args.debug:
            raise
        print(f"desra: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        print(f"desra: internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
