"""Keys: signing keys, cookie-sealing keys, and the development-only `token mint`."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from gateway.cli.arguments import config_arg
from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.tokens.keys import generate_key_material, load_keyring, write_secret_file


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's subcommands."""
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

    token = sub.add_parser("token", help="development tools for tokens").add_subparsers(
        dest="token_command", required=True, metavar="ACTION"
    )
    mint = token.add_parser(
        "mint",
        help="DEVELOPMENT ONLY: sign an access token with the configured active key, "
        "without a session (use /auth/login in real deployments)",
    )
    config_arg(mint)
    mint.add_argument("--sub", required=True, help="subject (user id)")
    mint.add_argument("--roles", default="", help="comma-separated roles")
    mint.add_argument("--scope", default="", help="space-separated scopes")
    mint.add_argument("--ttl", type=float, default=None, help="seconds (default tokens.access_ttl)")
    mint.set_defaults(func=cmd_token_mint)


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
