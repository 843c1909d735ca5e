"""Command line: `gateway serve`, configuration checks, keys, users, admin keys, operator
revocations and the development-only `token mint`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import secrets
import sys
from collections.abc import Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.admin.actions import AdminActions, cli_actor
from gateway.authserver.responses import session_json
from gateway.config import Settings, load_settings
from gateway.errors import ClientFault, ConfigError, NotFound, StoreUnavailable
from gateway.tokens.keys import generate_key_material, load_keyring, write_secret_file

DEFAULT_CONFIG = "config.yaml"
EXIT_USAGE = 2  # a bad command line or configuration
EXIT_STORE = 3  # Redis was unavailable: nothing was changed


class UsageError(Exception):
    """The command line asks for something that cannot be done as given (exit status 2)."""


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

    serve = sub.add_parser("serve", help="run the gateway")
    _config_arg(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes sharing the port via SO_REUSEPORT, each with its own revocation view "
        "(default: listen.workers, 0 = one per usable CPU; memory:// allows only 1)",
    )
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a configuration and print it")
    _config_arg(check)
    check.set_defaults(func=cmd_check_config)

    reference = sub.add_parser(
        "config-reference",
        help="print every configuration key: the markdown table of docs/configuration.md, "
        "rendered from the settings models",
    )
    reference.set_defaults(func=cmd_config_reference)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    generate = keys.add_parser(
        "generate", help="write a new private key (PEM) or HS256 secret, mode 0600"
    )
    generate.add_argument("--alg", choices=["EdDSA", "ES256", "RS256", "HS256"], default="EdDSA")
    generate.add_argument("--out", required=True, type=Path, help="file to create")
    generate.add_argument("--if-missing", action="store_true", help="do nothing if --out exists")
    generate.set_defaults(func=cmd_keys_generate)

    cookie_key = sub.add_parser(
        "cookie-key", help="keys that seal browser session cookies"
    ).add_subparsers(dest="cookie_key_command", required=True, metavar="ACTION")
    cookie_generate = cookie_key.add_parser(
        "generate", help="write a new cookie-sealing key (32 random bytes, base64url), mode 0600"
    )
    cookie_generate.add_argument("--out", required=True, type=Path, help="file to create")
    cookie_generate.add_argument(
        "--if-missing", action="store_true", help="do nothing if --out exists"
    )
    cookie_generate.set_defaults(func=cmd_cookie_key_generate)

    users = sub.add_parser("users", help="the local user file for /auth/login").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    add = users.add_parser("add", help="add or replace a user (argon2id hash) in a YAML user file")
    add.add_argument("--file", required=True, type=Path, help="user file (created if missing)")
    add.add_argument("--username", required=True)
    add.add_argument("--roles", default="", help="comma-separated roles")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(func=cmd_users_add)
    hash_cmd = users.add_parser("hash-password", help="print an argon2id hash of a password")
    hash_cmd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    hash_cmd.set_defaults(func=cmd_users_hash)

    admin_key = sub.add_parser("admin-key", help="admin API keys").add_subparsers(
        dest="admin_key_command", required=True, metavar="ACTION"
    )
    create_key = admin_key.add_parser(
        "create", help="make a new admin API key; prints the key once and its config entry"
    )
    create_key.add_argument("--id", required=True, help="key id recorded in the audit trail")
    create_key.set_defaults(func=cmd_admin_key_create)

    introspection_client = sub.add_parser(
        "introspection-client", help="callers of /auth/introspect"
    ).add_subparsers(dest="introspection_client_command", required=True, metavar="ACTION")
    create_client = introspection_client.add_parser(
        "create",
        help="make a new introspection client secret; prints it once and its config entry",
    )
    create_client.add_argument("--id", required=True, help="client id (the HTTP Basic user)")
    create_client.set_defaults(func=cmd_introspection_client_create)

    revoke = sub.add_parser(
        "revoke", help="revoke through Redis directly (reaches every running gateway)"
    ).add_subparsers(dest="revoke_command", required=True, metavar="KIND")
    revoke_token = revoke.add_parser("token", help="one access token, until it expires")
    _config_arg(revoke_token)
    revoke_token.add_argument("--token", help="the access token (JWT)")
    revoke_token.add_argument("--jti", help="token id, with --exp")
    revoke_token.add_argument("--exp", type=float, help="token expiry, Unix seconds")
    revoke_token.set_defaults(func=cmd_revoke_token)
    revoke_session = revoke.add_parser("session", help="one session (device)")
    _config_arg(revoke_session)
    revoke_session.add_argument("sid")
    revoke_session.set_defaults(func=cmd_revoke_session)
    revoke_user = revoke.add_parser("user", help="every session and earlier token of a user")
    _config_arg(revoke_user)
    revoke_user.add_argument("sub")
    revoke_user.set_defaults(func=cmd_revoke_user)

    sessions = sub.add_parser("sessions", help="sessions in Redis").add_subparsers(
        dest="sessions_command", required=True, metavar="ACTION"
    )
    list_cmd = sessions.add_parser("list", help="a user's sessions")
    _config_arg(list_cmd)
    list_cmd.add_argument("sub")
    list_cmd.set_defaults(func=cmd_sessions_list)

    audit = sub.add_parser("audit", help="the admin audit trail").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    tail = audit.add_parser("tail", help="newest entries first")
    _config_arg(tail)
    tail.add_argument("-n", "--count", type=int, default=20)
    tail.set_defaults(func=cmd_audit_tail)

    token = sub.add_parser("token", help="development tools for tokens").add_subparsers(
        dest="token_command", required=True, metavar="ACTION"
    )
    mint = token.add_parser(
        "mint",
        help="DEVELOPMENT ONLY: sign an access token with the configured active key, "
        "without a session (use /auth/login in real deployments)",
    )
    _config_arg(mint)
    mint.add_argument("--sub", required=True, help="subject (user id)")
    mint.add_argument("--roles", default="", help="comma-separated roles")
    mint.add_argument("--scope", default="", help="space-separated scopes")
    mint.add_argument("--ttl", type=float, default=None, help="seconds (default tokens.access_ttl)")
    mint.set_defaults(func=cmd_token_mint)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="YAML configuration (default: %(default)s); GATEWAY_* environment variables "
        "override it, with __ between nested keys (GATEWAY_REDIS__URL)",
    )


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
    settings = load_settings(args.config)
    load_keyring(settings.keys)
    print(json.dumps(masked(settings), indent=2, default=str))
    print("configuration OK", file=sys.stderr)
    return 0


def cmd_config_reference(_args: argparse.Namespace) -> int:
    from gateway.config_reference import render_reference

    print(render_reference(), end="")
    return 0


def masked(settings: Settings) -> dict[str, object]:
    """The effective settings with secrets masked: admin key hashes and URL passwords.

    Key material never appears: settings hold only the files and variables it comes from.
    """
    data = settings.model_dump(mode="json")
    for key in [*data["admin"]["keys"], *data["introspection"]["clients"]]:
        key["hash"] = key["hash"][:15] + "...(masked)"
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


def cmd_keys_generate(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists():
        if args.if_missing:
            return 0
        print(f"gateway: {out} exists; refusing to overwrite a key", file=sys.stderr)
        return 1
    write_secret_file(out, generate_key_material(args.alg))
    kid = f"{args.alg.lower()}-{secrets.token_hex(4)}"
    source = "secret_file" if args.alg == "HS256" else "private_key_file"
    print(f"wrote {args.alg} key to {out} (mode 0600). Add to keys.items:")
    print(f"  - {{kid: {kid}, alg: {args.alg}, {source}: {out}}}")
    return 0


def cmd_cookie_key_generate(args: argparse.Namespace) -> int:
    from gateway.browser.seal import new_seal_key

    out: Path = args.out
    if out.exists():
        if args.if_missing:
            return 0
        print(f"gateway: {out} exists; refusing to overwrite a key", file=sys.stderr)
        return 1
    write_secret_file(out, new_seal_key())
    print(f"wrote a cookie-sealing key to {out} (mode 0600). Add it first in browser.seal_keys:")
    print(f"  - {{id: c{secrets.token_hex(3)}, secret_file: {out}}}")
    return 0


def cmd_token_mint(args: argparse.Namespace) -> int:
    from gateway.services import build_issuer

    settings = load_settings(args.config)
    issuer = build_issuer(settings, load_keyring(settings.keys))
    if issuer is None:
        raise ConfigError("keys.active must name a signing key to mint tokens")
    roles = [r for r in args.roles.split(",") if r]
    issued = issuer.issue(
        sub=args.sub,
        sid=f"dev-{secrets.token_urlsafe(12)}",
        roles=roles,
        scope=args.scope or None,
        ttl=args.ttl,
    )
    print(issued.token)
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("gateway: passwords differ")
    if not password:
        raise SystemExit("gateway: empty password")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from gateway.authserver.credentials import hash_password, save_user

    password_hash = hash_password(_read_password(args.password_stdin))
    roles = [r for r in args.roles.split(",") if r]
    save_user(args.file, args.username, password_hash, roles)
    print(f"user {args.username!r} saved in {args.file} with roles {roles}")
    return 0


def cmd_users_hash(args: argparse.Namespace) -> int:
    from gateway.authserver.credentials import hash_password

    print(hash_password(_read_password(args.password_stdin)))
    return 0


def cmd_admin_key_create(args: argparse.Namespace) -> int:
    from gateway.admin.apikeys import admin_key_hash, new_admin_key

    key = new_admin_key()
    print(f"admin API key (shown once, keep it secret): {key}")
    print("add to admin.keys:")
    print(f"  - {{id: {args.id}, hash: {admin_key_hash(key)}}}")
    return 0


def cmd_introspection_client_create(args: argparse.Namespace) -> int:
    from gateway.authserver.introspection import client_secret_hash, new_client_secret
    from gateway.config import IntrospectionClientSettings

    try:
        IntrospectionClientSettings(id=args.id, hash="sha256:" + "0" * 64)
    except ValueError:
        raise UsageError("--id may hold letters, digits, '.', '_' and '-' (64 at most)") from None
    secret = new_client_secret()
    print(f"introspection client secret for {args.id} (shown once, keep it secret): {secret}")
    print("add to introspection.clients:")
    print(f"  - {{id: {args.id}, hash: {client_secret_hash(secret)}}}")
    return 0


def _operator_actions(settings: Settings) -> AbstractAsyncContextManager[AdminActions]:
    """The operator actions on the shared Redis (the whole gateway is imported only now)."""
    from gateway.services import operator_actions

    return operator_actions(settings)


def _run_operation(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one operator action; Redis down is exit 3, a refused request exit 2."""
    try:
        return asyncio.run(coro)
    except StoreUnavailable:
        print("gateway: Redis is unavailable; nothing was changed", file=sys.stderr)
        raise SystemExit(EXIT_STORE) from None
    except ClientFault as exc:
        print(f"gateway: {exc.description}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


async def _revoke_token(settings: Settings, args: argparse.Namespace) -> str:
    if args.token is None and (args.jti is None or args.exp is None):
        raise UsageError("give --token, or --jti with --exp")
    async with _operator_actions(settings) as actions:
        result = await actions.revoke_token(
            cli_actor(), token=args.token, jti=args.jti, exp=args.exp
        )
    if not result["revoked"]:
        return f"token {result['id']} has already expired; nothing to revoke"
    return f"revoked token {result['id']} until {int(result['until'])}"


async def _revoke_session(settings: Settings, sid: str) -> str | None:
    async with _operator_actions(settings) as actions:
        try:
            result = await actions.revoke_session(cli_actor(), sid)
        except NotFound:
            return None
    return f"revoked session {sid} of {result['sub']}"


async def _revoke_user(settings: Settings, sub: str) -> str:
    async with _operator_actions(settings) as actions:
        result = await actions.revoke_user(cli_actor(), sub)
    count = result["sessions_revoked"]
    return f"revoked user {sub}: {count} sessions ended, earlier tokens rejected"


async def _sessions(settings: Settings, sub: str) -> list[dict[str, Any]]:
    async with _operator_actions(settings) as actions:
        sessions = await actions.sessions_of(sub)
    return [session_json(s, current_sid=None) for s in sessions]


async def _audit(settings: Settings, count: int) -> list[dict[str, Any]]:
    async with _operator_actions(settings) as actions:
        entries = await actions.audit_entries(count)
    return [e.as_json() for e in entries]


def cmd_revoke_token(args: argparse.Namespace) -> int:
    print(_run_operation(_revoke_token(load_settings(args.config), args)))
    return 0


def cmd_revoke_session(args: argparse.Namespace) -> int:
    message = _run_operation(_revoke_session(load_settings(args.config), args.sid))
    if message is None:
        print(f"no session {args.sid}")
        return 1
    print(message)
    return 0


def cmd_revoke_user(args: argparse.Namespace) -> int:
    print(_run_operation(_revoke_user(load_settings(args.config), args.sub)))
    return 0


def cmd_sessions_list(args: argparse.Namespace) -> int:
    print(json.dumps(_run_operation(_sessions(load_settings(args.config), args.sub)), indent=2))
    return 0


def cmd_audit_tail(args: argparse.Namespace) -> int:
    for entry in _run_operation(_audit(load_settings(args.config), args.count)):
        print(json.dumps(entry))
    return 0
