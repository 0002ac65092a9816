"""Placeholder: this command is being built."""

from __future__ import annotations

import argparse

from loaders.errors import TerminalError


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    del parser, name


def run(args: argparse.Namespace) -> int:
    raise TerminalError(f"`clicks {args.command}` is not built yet")
