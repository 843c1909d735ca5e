"""Keys: signing keys, cookie-sealing keys, and the development-only `token mint`."""

from __future__ import annotations

import argparse
import secrets
import sys
import textwrap
from pathlib import Path

from gateway.cli.arguments import UsageError, config_arg
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

    rotate = keys.add_parser(
        "rotate",
        help="print the steps of a signing-key rotation by reloads, with their earliest times "
        "(from tokens.access_ttl, tokens.leeway and the JWKS cache max-age); with --out, "
        "write the new key first",
        description="A signing key is rotated by three reloads and no restart: publish the "
        "new key, sign with it once every verifier can know it, drop the old one once no token "
        "it signed is still accepted. No token is refused on the way. The times printed "
        "assume step 1 is reloaded now and each later step as early as it may be; each wait "
        "counts from the previous step's reload on the last instance.",
    )
    config_arg(rotate)
    rotate.add_argument(
        "--alg",
        choices=["EdDSA", "ES256", "RS256", "HS256"],
        default=None,
        help="algorithm of the new key (default: the active key's)",
    )
    rotate.add_argument("--kid", default=None, help="key id of the new key (default: generated)")
    rotate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the new key here (mode 0600, never overwritten); else the plan says how",
    )
    rotate.set_defaults(func=cmd_keys_rotate)

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


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from gateway.authserver.key_rotation import (
        duration,
        rotation_plan,
        signing_keys_besides_active,
    )

    settings = load_settings(args.config)
    keys = settings.keys
    active = next((item for item in keys.items if item.kid == keys.active), None)
    alg = args.alg or (active.alg if active is not None else "EdDSA")
    kid = args.kid or f"{alg.lower()}-{secrets.token_hex(4)}"
    if any(item.kid == kid for item in keys.items):
        raise UsageError(f"keys.items already has a key {kid!r}")
    source = "secret_file" if alg == "HS256" else "private_key_file"
    out: Path = args.out if args.out is not None else Path(f"keys/{kid}.{_suffix(alg)}")
    if args.out is not None:
        if out.exists():
            raise UsageError(f"{out} exists; refusing to overwrite a key")
        write_secret_file(out, generate_key_material(alg))
    entry = f"- {{kid: {kid}, alg: {alg}, {source}: {out}}}"
    plan = rotation_plan(keys, settings.tokens, new_kid=kid, new_alg=alg, entry=entry)
    print(f"Signing key rotation {keys.active or '(no active key)'} → {kid} ({alg}): three")
    print("reloads of every instance (gateway reload --pid-file FILE, SIGHUP, or")
    print("POST /admin/reload), no restart, no token refused on the way.")
    if args.out is not None:
        print(f"Wrote the new {alg} key to {out} (mode 0600).")
    else:
        print(f"First: gateway keys generate --alg {alg} --out {out}")
    besides = signing_keys_besides_active(keys)
    if besides:
        note = (
            f"Note: keys.items already holds signing keys besides the active one "
            f"({', '.join(besides)}): a rotation in progress continues at step 2 (to sign "
            "with a published key) or step 3 (to drop the previous one), with the waits below."
        )
        print(textwrap.fill(note, width=88))
    print()
    for step in plan:
        when = step.earliest.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        if step.number == 1:
            timing = f"now ({when})"
        else:
            timing = f"not before {when}, {duration(step.wait)} after step {step.number - 1}"
        print(f"{step.number}. {step.title.capitalize()}: {timing}")
        print(f"   {step.change}")
        print("   Then reload every instance.")
        print(
            textwrap.fill(
                step.because,
                88,
                initial_indent="   ",
                subsequent_indent="   ",
                break_on_hyphens=False,
            )
        )
    return 0


def _suffix(alg: str) -> str:
    return "key" if alg == "HS256" else "pem"


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
