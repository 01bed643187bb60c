"""Command-line interface: ``glacierwatch <stage> ...``, a thin layer over the typed stage functions.

Each stage package has a ``cli`` module with ``register(subparsers)``, which adds its verb(s) and sets
``func`` on the parser to a handler ``handler(args) -> int``. Errors a user can cause
(:class:`~glacierwatch.errors.GlacierwatchError`) are printed on one line, without a traceback, with
exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from glacierwatch import __version__
from glacierwatch.errors import GlacierwatchError

#: Stage packages whose ``cli.register`` adds verbs, in pipeline order.
STAGE_CLIS = (
    "glacierwatch.synth.cli",
    "glacierwatch.inventory.cli",
    "glacierwatch.imagery.cli",
    "glacierwatch.catalog.cli",
    "glacierwatch.chips.cli",
    "glacierwatch.model.cli",
    "glacierwatch.timeseries.cli",
    "glacierwatch.trends.cli",
    "glacierwatch.validate.cli",
    "glacierwatch.report.cli",
    "glacierwatch.pipeline_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glacierwatch",
        description="Mountain glacier area change from Landsat imagery.",
    )
    parser.add_argument("--version", action="version", version=f"glacierwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in STAGE_CLIS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except GlacierwatchError as exc:
        print(f"glacierwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glacierwatch: interrupted; finished outputs are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
