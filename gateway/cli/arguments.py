"""What every command shares: the configuration argument, usage errors and exit codes, and
operator actions run against the shared Redis."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

from gateway.config import Settings
from gateway.errors import ClientFault, StoreUnavailable

if TYPE_CHECKING:
    from gateway.admin.actions import AdminActions

DEFAULT_CONFIG: Final = "config.yaml"
EXIT_USAGE: Final = 2  # a bad command line or configuration
EXIT_STORE: Final = 3  # Redis was unavailable: nothing was changed


class UsageError(Exception):
    """The command line asks for something that cannot be done as given (exit status 2)."""


def config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="YAML configuration (default: %(default)s); GATEWAY_* environment variables "
        "override it, with __ between nested keys (GATEWAY_REDIS__URL)",
    )


def operator_actions(settings: Settings) -> AbstractAsyncContextManager[AdminActions]:
    """The operator actions on the shared Redis (the whole gateway is imported only now)."""
    from gateway.services import operator_actions as actions

    return actions(settings)


def run_operation(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one operator action; Redis down is exit 3, a refused request exit 2."""
    try:
        return asyncio.run(coro)
    except StoreUnavailable:
        print("gateway: Redis is unavailable; nothing was changed", file=sys.stderr)
        raise SystemExit(EXIT_STORE) from None
    except ClientFault as exc:
        print(f"gateway: {exc.description}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
