"""`clicks`: a thin command line over the pipeline's modules.

Each subcommand lives in the module that does the work; that module exposes
``add_arguments(parser)`` and ``run(args) -> int``. This file only wires them up, sets logging
once, and turns a ``ClicksError`` into its exit code and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from loaders.errors import ClicksError
from loaders.settings import project_dir, read_stack_state

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
    "reset": ("loaders.reset", "drop what the pipeline built and empty the emulators (local only)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clicks", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="only warnings and errors",
        )
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug output"
        )
        module = importlib.import_module(module_name)
        module.add_arguments(command, name)
        command.set_defaults(module=module)
    return parser


def configure_logging(*, quiet: bool, verbose: bool) -> None:
    """Console lines for people, JSON lines under logs/ for machines; secrets removed from both."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(message)s", "%H:%M:%S"))
    handlers: list[logging.Handler] = [console]
    log_dir = Path(os.environ.get("CLICKS_LOG_DIR") or project_dir() / "logs")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        jsonl = logging.FileHandler(log_dir / "clicks.jsonl")
        jsonl.setLevel(logging.INFO)
        jsonl.setFormatter(JsonLineFormatter())
        handlers.append(jsonl)
    except OSError:
        pass  # a read-only checkout still runs; the console has every line that matters
    secret_filter = SecretFilter()
    for handler in handlers:
        handler.addFilter(secret_filter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(logging.WARNING)
    logging.getLogger("loaders").setLevel(logging.DEBUG if verbose else logging.INFO)


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(entry)


class SecretFilter(logging.Filter):
    """Blank out the AE token, the Stripe key and the database password wherever they appear."""

    def __init__(self) -> None:
        super().__init__()
        state = read_stack_state()
        names = ("AE_API_TOKEN", "STRIPE_API_KEY", "PGPASSWORD")
        values = {os.environ.get(name) or state.get(name) for name in names}
        url = os.environ.get("DATABASE_URL") or state.get("DATABASE_URL") or ""
        values.add(urlsplit(url).password if url else None)
        self.secrets = sorted(
            (value for value in values if value and len(value) >= 4), key=len, reverse=True
        )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = message
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


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
