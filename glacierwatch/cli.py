"""Command-line interface: ``glacierwatch <verb> ...``, a thin layer over the typed stage functions.

Each stage package has a ``cli`` module with ``register(subparsers)``, which adds its verb(s) and sets
``func`` on the parser to a handler ``handler(args) -> int``. :data:`VERBS` names the module of every
verb; only the module of the verb being run is imported (``glacierwatch --help`` imports none, so it
starts without torch, statsmodels or matplotlib), and the handlers import the heavy stage code.

Errors a user can cause (:class:`~glacierwatch.errors.GlacierwatchError`) and file-system errors
(:class:`OSError`: a missing folder, a permission, a file in the way) are printed on one line,
``glacierwatch: error: ...``, without a traceback (``-v`` adds it), with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from glacierwatch import __version__
from glacierwatch.errors import GlacierwatchError


class Verb(NamedTuple):
    module: str  #: module whose ``register(subparsers)`` adds the verb
    help: str  #: one line for ``glacierwatch --help``


#: Every verb, in pipeline order. A new verb is one line here plus its module's ``register``.
VERBS: dict[str, Verb] = {
    "synth": Verb("glacierwatch.synth.cli", "write a synthetic Landsat world with known truth"),
    "inventory": Verb("glacierwatch.inventory.cli", "select glaciers from GLIMS / RGI / national outlines"),
    "imagery": Verb("glacierwatch.imagery.cli", "fetch Landsat C2 L2 scenes and DEMs onto the glacier grids"),
    "catalog": Verb("glacierwatch.catalog.cli", "scene catalog: build it, query it with SQL, run the selections"),
    "chips": Verb("glacierwatch.chips.cli", "training chips (composites, masks, channels, split)"),
    "train": Verb("glacierwatch.model.cli", "train the U-Net on a chip set (resumable)"),
    "evaluate": Verb("glacierwatch.model.cli", "Dice/IoU and area errors of a model on a chip split"),
    "timeseries": Verb("glacierwatch.timeseries.cli", "per-glacier area time series and overlays"),
    "trends": Verb("glacierwatch.trends.cli", "per-glacier and regional relative area change, Table II"),
    "validate": Verb("glacierwatch.validate.cli", "compare areas with dated reference areas (GLIMS, SGI, WGMS)"),
    "report": Verb("glacierwatch.report.cli", "self-contained HTML report of a work folder"),
    "run": Verb("glacierwatch.pipeline_cli", "run every stage from a TOML configuration"),
    "init": Verb("glacierwatch.pipeline_cli", "write a commented example configuration"),
    "demo": Verb("glacierwatch.pipeline_cli", "synthetic world + the whole chain + estimated vs true trends"),
}

#: Options accepted anywhere on the command line, before or after the verb.
_LOUDER = {"-v", "--verbose"}
_QUIETER = {"-q", "--quiet"}


def split_verbosity(argv: Sequence[str]) -> tuple[list[str], int]:
    """Remove ``-v``/``-vv``/``--verbose`` and ``-q``/``-qq``/``--quiet`` from anywhere in ``argv``
    (up to a ``--``); return the rest and the verbosity (count of -v minus count of -q)."""
    rest: list[str] = []
    verbosity = 0
    for i, arg in enumerate(argv):
        if arg == "--":
            rest += argv[i:]
            break
        if arg in _LOUDER or arg in _QUIETER:
            verbosity += 1 if arg in _LOUDER else -1
        elif len(arg) > 2 and arg[0] == "-" and arg[1] in "vq" and set(arg[1:]) == {arg[1]}:
            verbosity += (len(arg) - 1) * (1 if arg[1] == "v" else -1)
        else:
            rest.append(arg)
    return rest, verbosity


def _verb_of(argv: Sequence[str]) -> str | None:
    """The first word that is not an option, if it is a verb."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in VERBS else None
    return None


def build_parser(verbs: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full options of ``verbs`` (default: all; importing their modules) and a
    one-line entry for every other verb."""
    parser = argparse.ArgumentParser(
        prog="glacierwatch",
        description="Mountain glacier area change from Landsat imagery.",
        epilog="-v/--verbose (-v: progress messages and tracebacks, -vv: debug) and -q/--quiet (errors "
               "only, no progress bars) are accepted before or after the verb. "
               "'glacierwatch VERB --help' shows a verb's options.",
    )
    parser.add_argument("--version", action="version", version=f"glacierwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug); tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = list(VERBS) if verbs is None else list(verbs)
    for module in dict.fromkeys(VERBS[v].module for v in wanted):
        importlib.import_module(module).register(sub)
    for name, verb in VERBS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=verb.help, add_help=False)
    return parser


def _quiet_progress(args: argparse.Namespace) -> None:
    """-q also turns progress bars off, on every verb that has --no-progress."""
    if hasattr(args, "no_progress"):
        args.no_progress = True


def main(argv: Sequence[str] | None = None) -> int:
    from glacierwatch.logs import console_logging

    rest, verbosity = split_verbosity(list(sys.argv[1:] if argv is None else argv))
    verb = _verb_of(rest)
    parser = build_parser([verb] if verb else [])
    args = parser.parse_args(rest)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    if verbosity < 0:
        _quiet_progress(args)
    with console_logging(verbosity):
        try:
            return int(args.func(args) or 0)
        except (GlacierwatchError, OSError) as exc:
            if verbosity > 0:
                traceback.print_exc()
            print(f"glacierwatch: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("glacierwatch: interrupted; finished outputs are kept, rerun to resume", file=sys.stderr)
            return 130


def _one_line(exc: BaseException) -> str:
    """The message of an error on one line; an OSError names its file (``[Errno 2] ...: 'path'``)."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
