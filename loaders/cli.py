"""`clicks`: a thin command line over the pipeline's modules.

Each subcommand lives in the module that does the work; that module exposes
``add_arguments(parser)`` and ``run(args) -> int``. This file only wires them up, sets logging
once, and turns a ``ClicksError`` into its exit code and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from loaders.errors import ClicksError

log = logging.getLogger("loaders")

# command name -> (module, one-line help). Modules are imported only when their command runs,
# except for building the parser, so keep heavy imports (dbt, chdb) inside functions.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("loaders.stack_cli", "start the local stack (Postgres, AE and Stripe emulators)"),
    "down": ("loaders.stack_cli", "stop what `clicks up` started"),
    "status": ("loaders.stack_cli", "show what runs where"),
    "env": ("loaders.stack_cli", "print export lines that point every tool at the stack"),
    "simulate": ("loaders.simulate", "fill app.* and write simulated clicks to the AE emulator"),
    "load": ("loaders.landing", "land AE aggregates of a time window in raw.*"),
    "export": ("loaders.export", "send a cycle's ledger entries to Stripe meter events"),
    "nightly": ("loaders.nightly", "run one or more nightly cycles end to end"),
    "measure": ("loaders.measure", "measure AE query latency and ingestion rate (ADR-0002 POC)"),
    "demo": ("loaders.demo", "simulate a fortnight, run every cycle, show the gate at work"),
    "selftest-dbt": ("loaders.selftest", "run dbt build and its tests over a simulated week"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clicks", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="only warnings and errors")
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="debug output")
        module = importlib.import_module(module_name)
        module.add_arguments(command, name)
        command.set_defaults(module=module)
    return parser


def configure_logging(*, quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("loaders").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    try:
        return int(args.module.run(args) or 0)
    except ClicksError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
