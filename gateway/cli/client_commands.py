"""`gateway clients add|list|remove`: the clients file (`auth.clients_file`) of registered
OAuth clients. A confidential client's secret is made here, printed once and kept hashed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from gateway.cli.arguments import UsageError
from gateway.config import ClientSettings, describe_validation_error


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's subcommands."""
    clients = sub.add_parser(
        "clients", help="registered OAuth clients in a clients file (auth.clients_file)"
    ).add_subparsers(dest="clients_command", required=True, metavar="ACTION")
    add = clients.add_parser(
        "add",
        help="add or replace a client; a confidential client's new secret is printed once",
        description="Add or replace (by id) a client in a YAML clients file, created if "
        "missing. Point auth.clients_file at it; gateways read it when they start.",
    )
    add.add_argument("--file", required=True, type=Path, help="clients file (YAML)")
    add.add_argument("--id", required=True, help="client_id (letters, digits, . _ -)")
    add.add_argument("--name", help="shown to users on the consent page")
    add.add_argument(
        "--type",
        choices=("public", "confidential"),
        default="confidential",
        help="public: native or browser app without a secret; confidential (default)",
    )
    add.add_argument(
        "--grants",
        default=None,
        help="comma-separated grants (default: authorization_code,refresh_token for apps with "
        "--redirect-uri, client_credentials otherwise)",
    )
    add.add_argument(
        "--redirect-uri", action="append", default=[], help="a redirect URI (repeatable)"
    )
    add.add_argument("--scopes", default="", help="comma-separated scopes it may ask for")
    add.add_argument("--roles", default="", help="comma-separated roles of its own tokens")
    add.add_argument(
        "--auth-method",
        choices=("client_secret_basic", "client_secret_post", "private_key_jwt"),
        help="how a confidential client authenticates (default client_secret_basic)",
    )
    add.add_argument("--jwks-file", type=Path, help="private_key_jwt: its public keys (JWKS)")
    add.add_argument("--jwks-uri", help="private_key_jwt: where it publishes its keys")
    add.add_argument("--consent", action="store_true", help="third-party: users confirm its scopes")
    add.set_defaults(func=cmd_clients_add)

    list_cmd = clients.add_parser("list", help="the clients of a clients file, as JSON")
    list_cmd.add_argument("--file", required=True, type=Path, help="clients file (YAML)")
    list_cmd.set_defaults(func=cmd_clients_list)

    remove = clients.add_parser("remove", help="remove a client from a clients file")
    remove.add_argument("--file", required=True, type=Path, help="clients file (YAML)")
    remove.add_argument("--id", required=True, help="client_id")
    remove.set_defaults(func=cmd_clients_remove)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_clients_add(args: argparse.Namespace) -> int:
    from gateway.authserver.client_registry import new_client_secret, save_client, secret_sha256

    grants = _items(args.grants) if args.grants is not None else None
    if grants is None:
        grants = (
            ["authorization_code", "refresh_token"] if args.redirect_uri else ["client_credentials"]
        )
    method = args.auth_method
    keys = args.jwks_file is not None or args.jwks_uri is not None
    if method is None and args.type == "confidential":
        method = "private_key_jwt" if keys else "client_secret_basic"
    secret = None
    fields: dict[str, object] = {
        "id": args.id,
        "name": args.name,
        "type": args.type,
        "grants": grants,
        "redirect_uris": args.redirect_uri,
        "scopes": _items(args.scopes),
        "roles": _items(args.roles),
        "auth_method": method,
        "jwks_file": args.jwks_file,
        "jwks_uri": args.jwks_uri,
        "consent": args.consent,
    }
    if method in ("client_secret_basic", "client_secret_post"):
        secret = new_client_secret()
        fields["secret_hash"] = secret_sha256(secret)
    try:
        entry = ClientSettings.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc)) from None
    save_client(args.file, entry)
    print(f"client {entry.id!r} ({entry.type}, {', '.join(entry.grants)}) saved in {args.file}")
    if secret is not None:
        print(f"client secret (shown once, keep it secret): {secret}")
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    from gateway.authserver.client_registry import load_clients_file

    listed = []
    for entry in load_clients_file(args.file) if args.file.exists() else []:
        shown = entry.model_dump(mode="json", exclude_none=True)
        if "secret_hash" in shown:
            shown["secret_hash"] = shown["secret_hash"][:15] + "...(masked)"
        shown["auth_method"] = entry.method
        listed.append(shown)
    print(json.dumps(listed, indent=2))
    return 0


def cmd_clients_remove(args: argparse.Namespace) -> int:
    from gateway.authserver.client_registry import remove_client

    if not args.file.exists() or not remove_client(args.file, args.id):
        print(f"no client {args.id!r} in {args.file}")
        return 1
    print(f"client {args.id!r} removed from {args.file} (running gateways keep it until restarted)")
    return 0
