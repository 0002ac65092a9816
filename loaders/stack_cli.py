"""`clicks up | down | status | env`."""

from __future__ import annotations

import argparse
import logging

from loaders import stack
from loaders.errors import ConfigError
from loaders.settings import clicks_home, read_stack_state

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.set_defaults(stack_command=name)


def run(args: argparse.Namespace) -> int:
    home = clicks_home()
    if args.stack_command == "up":
        state = stack.up(home)
        log.info("stack up under %s (postgres, ae, stripe)", home)
        log.info('point your shell at it: eval "$(clicks env)"')
        log.debug("AE SQL endpoint: %s", state["AE_SQL_URL"])
    elif args.stack_command == "down":
        stopped = stack.down(home)
        log.info("stopped: %s", ", ".join(stopped) or "nothing was running")
    elif args.stack_command == "status":
        for name, where, answers in stack.status(home):
            print(f"{name:<9} {'up' if answers else 'DOWN':<5} {where}")
    else:
        state = read_stack_state(home)
        if not state:
            raise ConfigError(f"no local stack under {home}: run `clicks up` first")
        print("\n".join(stack.env_lines(state, home)))
    return 0
