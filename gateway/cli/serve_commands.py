"""`gateway serve`, `check-config` and `config-reference`: running the gateway and checking
what it will run with."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from gateway.cli.arguments import config_arg
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from gateway.tokens.keys import load_keyring


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's subcommands."""
    serve = sub.add_parser("serve", help="run the gateway")
    config_arg(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes sharing the port via SO_REUSEPORT, each with its own revocation view "
        "(default: listen.workers, 0 = one per usable CPU; memory:// allows only 1)",
    )
    serve.set_defaults(func=cmd_serve)

    check_help = (
        "validate a configuration (keys, routes' rules and expressions) and print it (secrets "
        "masked); warn of routes and rules that can never match; with a Sentinel or Cluster "
        "redis.url, also ask the sentinels (or a cluster node) how many replicas each primary "
        "has, and warn when redis.min_replicas_ack loses writes (0) or stops them in a failover"
    )
    check = sub.add_parser("check-config", help=check_help, description=check_help)
    config_arg(check)
    check.set_defaults(func=cmd_check_config)

    reference = sub.add_parser(
        "config-reference",
        help="print every configuration key: the markdown table of docs/configuration.md, "
        "rendered from the settings models",
    )
    reference.set_defaults(func=cmd_config_reference)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.observability.logs import configure_logging
    from gateway.runtime.supervisor import run, worker_count

    settings = load_settings(args.config)
    if args.workers is not None and args.workers < 0:
        raise ConfigError("--workers must be 0 (one per CPU) or more")
    workers = worker_count(settings, args.workers)
    configure_logging(
        level=settings.logging.level,
        json_format=settings.logging.format == "json",
        access=settings.logging.access_log,
    )
    if settings.environment != "production":
        logging.getLogger("gateway").warning(
            "environment=%s: demo/development settings, not for production", settings.environment
        )
    return run(settings, workers=workers)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.policy.access import AccessPolicy
    from gateway.policy.shadowing import never_matching

    settings = load_settings(args.config)
    load_keyring(settings.keys)
    for route in settings.routes:  # compiles the rules: a bad expression or pattern is an error
        AccessPolicy.from_settings(route, clock=time.time)
    print(json.dumps(masked(settings), indent=2, default=str))
    blocked = ("/admin",) if settings.admin.block_public_path else ()
    for finding in never_matching(settings.routes, blocked=blocked):
        print(f"warning: {finding}", file=sys.stderr)
    for warning in replica_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print("configuration OK", file=sys.stderr)
    return 0


def replica_warnings(settings: Settings) -> list[str]:
    """redis.min_replicas_ack against the replicas the topology reports now (asked with the
    configured timeouts; what is assumed is said when nobody answers)."""
    import asyncio

    from gateway.store.replicas import ReplicasUnknown, fewest_replicas

    r = settings.redis
    if r.fails_over is None or r.min_replicas_ack == 0:
        return r.replica_warnings(None)  # nothing to count
    try:
        replicas = asyncio.run(
            fewest_replicas(
                r.url, connect_timeout=r.connect_timeout, socket_timeout=r.socket_timeout
            )
        )
    except ReplicasUnknown as exc:
        return r.replica_warnings(None, why=str(exc))
    return r.replica_warnings(replicas)


def cmd_config_reference(_args: argparse.Namespace) -> int:
    from gateway.config_reference import render_reference

    print(render_reference(), end="")
    return 0


def masked(settings: Settings) -> dict[str, object]:
    """The effective settings with secrets masked: admin key hashes and URL passwords.

    Key material never appears: settings hold only the files and variables it comes from.
    """
    data = settings.model_dump(mode="json", by_alias=True)
    for key in [*data["admin"]["keys"], *data["introspection"]["clients"]]:
        key["hash"] = key["hash"][:15] + "...(masked)"
    for client in data["clients"]:
        if client.get("secret_hash"):
            client["secret_hash"] = client["secret_hash"][:15] + "...(masked)"
    data["redis"]["url"] = _without_password(data["redis"]["url"])
    if data["auth"]["backend"]:
        data["auth"]["backend"]["url"] = _without_password(data["auth"]["backend"]["url"])
    for route in data["routes"]:
        route["upstream"] = _without_password(route["upstream"])
    return data


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:(masked)@{host}"))
