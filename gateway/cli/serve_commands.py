"""`gateway serve`, `reload`, `check-config` and `config-reference`: running the gateway,
reloading its configuration, and checking what it will run with."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.cli.arguments import UsageError, config_arg
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError


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
    serve.add_argument(
        "--pid-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the gateway's process id here while it runs (the supervisor's under "
        "--workers), for `gateway reload --pid-file FILE`",
    )
    serve.set_defaults(func=cmd_serve)

    reload = sub.add_parser(
        "reload",
        help="make a running gateway re-read its configuration and the files it names "
        "(SIGHUP to the process in --pid-file: every worker reloads)",
        description="Send SIGHUP to the gateway whose pid file is given. Every worker re-reads "
        "the configuration file it was started with, and the files that names (keys, users, "
        "seal keys, ...), and swaps it in for new requests; requests in flight finish on the "
        "old one. An invalid configuration, or one that changes a setting read only at start "
        "(listen and admin addresses, workers, redis.*, ...), is refused and the running one "
        "keeps serving: the gateway's log and gateway_config_reloads_total say which. "
        "POST /admin/reload does the same and answers with the outcome.",
    )
    reload.add_argument(
        "--pid-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="the pid file of `gateway serve --pid-file FILE`",
    )
    reload.add_argument(
        "--config",
        default=None,
        help="check this configuration first, as check-config does, and signal only if it "
        "passes (the gateway itself reads the file it was started with)",
    )
    reload.set_defaults(func=cmd_reload)

    check_help = (
        "validate a configuration and the files it names (keys, users, seal keys; routes' "
        "rules and expressions compiled) and print it (secrets masked); warn of routes and "
        "rules that can never match; with a Sentinel or Cluster redis.url, also ask the "
        "sentinels (or a cluster node) how many replicas each primary has, and warn when "
        "redis.min_replicas_ack loses writes (0) or stops them in a failover"
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
    # A SIGHUP before the gateway can reload is held back for it, never fatal (the default
    # action); the gateway handles it once it serves (gateway.runtime.supervisor.run).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
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
    return run(settings, workers=workers, config=Path(args.config), pid_path=args.pid_file)


def cmd_reload(args: argparse.Namespace) -> int:
    from gateway.runtime.pid_file import PidFileError, signal_reload

    if args.config is not None:
        check_configuration(args.config)
    try:
        pid = signal_reload(args.pid_file)
    except PidFileError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"sent SIGHUP to the gateway (pid {pid}): every worker reloads its configuration; "
        "the outcome is in its log and in gateway_config_reloads_total"
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.policy.shadowing import never_matching

    settings = check_configuration(args.config)  # builds it all: keys, users, rules
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


def check_configuration(path: str) -> Settings:
    """The settings in `path`, built as a gateway would build them (files read, nothing
    connected); ConfigError with the message a reload of it would be refused with."""
    from gateway.services import check_configuration as check

    settings = load_settings(path)
    check(settings)
    return settings


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
