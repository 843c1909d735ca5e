"""Who may sign in and call: the user file, admin API keys, introspection clients."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from gateway.cli.arguments import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's subcommands."""
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
