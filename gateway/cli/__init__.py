"""Command line: `gateway serve`, configuration checks, keys, users and clients, operator
revocations and the development-only `token mint`. One module per group of commands, each
registering its subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gateway.cli import (
    account_commands,
    client_commands,
    key_commands,
    operator_commands,
    policy_commands,
    serve_commands,
)
from gateway.cli.arguments import EXIT_USAGE, UsageError
from gateway.errors import ConfigError

COMMAND_GROUPS = (
    serve_commands,
    key_commands,
    account_commands,
    client_commands,
    operator_commands,
    policy_commands,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Token-enforcing API gateway: verifies JWT access tokens and proxies to "
        "legacy HTTP backends with trusted identity headers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser
