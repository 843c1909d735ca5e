"""Operator commands on the shared Redis: revocations, a user's sessions, the audit trail
(every running gateway sees them through Redis)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.admin.actions import cli_actor
from gateway.authserver.responses import session_json
from gateway.cli.arguments import UsageError, config_arg, operator_actions, run_operation
from gateway.config import Settings, load_settings
from gateway.errors import NotFound


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's subcommands."""
    revoke = sub.add_parser(
        "revoke", help="revoke through Redis directly (reaches every running gateway)"
    ).add_subparsers(dest="revoke_command", required=True, metavar="KIND")
    revoke_token = revoke.add_parser("token", help="one access token, until it expires")
    config_arg(revoke_token)
    revoke_token.add_argument("--token", help="the access token (JWT)")
    revoke_token.add_argument("--jti", help="token id, with --exp")
    revoke_token.add_argument("--exp", type=float, help="token expiry, Unix seconds")
    revoke_token.set_defaults(func=cmd_revoke_token)
    revoke_session = revoke.add_parser("session", help="one session (device)")
    config_arg(revoke_session)
    revoke_session.add_argument("sid")
    revoke_session.set_defaults(func=cmd_revoke_session)
    revoke_user = revoke.add_parser("user", help="every session and earlier token of a user")
    config_arg(revoke_user)
    revoke_user.add_argument("sub")
    revoke_user.set_defaults(func=cmd_revoke_user)
    revoke_client = revoke.add_parser(
        "client", help="every token a client holds of its own (client credentials)"
    )
    config_arg(revoke_client)
    revoke_client.add_argument("client_id", metavar="ID", help="the client's id")
    revoke_client.set_defaults(func=cmd_revoke_client)

    sessions = sub.add_parser("sessions", help="sessions in Redis").add_subparsers(
        dest="sessions_command", required=True, metavar="ACTION"
    )
    list_cmd = sessions.add_parser("list", help="a user's sessions")
    config_arg(list_cmd)
    list_cmd.add_argument("sub")
    list_cmd.set_defaults(func=cmd_sessions_list)

    audit = sub.add_parser("audit", help="the admin audit trail").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    tail = audit.add_parser("tail", help="newest entries first")
    config_arg(tail)
    tail.add_argument("-n", "--count", type=int, default=20)
    tail.set_defaults(func=cmd_audit_tail)


async def _revoke_token(settings: Settings, args: argparse.Namespace) -> str:
    if args.token is None and (args.jti is None or args.exp is None):
        raise UsageError("give --token, or --jti with --exp")
    async with operator_actions(settings) as actions:
        result = await actions.revoke_token(
            cli_actor(), token=args.token, jti=args.jti, exp=args.exp
        )
    if not result["revoked"]:
        return f"token {result['id']} has already expired; nothing to revoke"
    return f"revoked token {result['id']} until {int(result['until'])}"


async def _revoke_session(settings: Settings, sid: str) -> str | None:
    async with operator_actions(settings) as actions:
        try:
            result = await actions.revoke_session(cli_actor(), sid)
        except NotFound:
            return None
    return f"revoked session {sid} of {result['sub']}"


async def _revoke_user(settings: Settings, sub: str) -> str:
    async with operator_actions(settings) as actions:
        result = await actions.revoke_user(cli_actor(), sub)
    count = result["sessions_revoked"]
    return f"revoked user {sub}: {count} sessions ended, earlier tokens rejected"


async def _revoke_client(settings: Settings, client_id: str) -> str:
    async with operator_actions(settings) as actions:
        result = await actions.revoke_client(cli_actor(), client_id)
    return (
        f"revoked client {client_id}: its tokens issued before now are rejected ({result['sub']})"
    )


async def _sessions(settings: Settings, sub: str) -> list[dict[str, Any]]:
    async with operator_actions(settings) as actions:
        sessions = await actions.sessions_of(sub)
    return [session_json(s, current_sid=None) for s in sessions]


async def _audit(settings: Settings, count: int) -> list[dict[str, Any]]:
    async with operator_actions(settings) as actions:
        entries = await actions.audit_entries(count)
    return [e.as_json() for e in entries]


def cmd_revoke_token(args: argparse.Namespace) -> int:
    print(run_operation(_revoke_token(load_settings(args.config), args)))
    return 0


def cmd_revoke_session(args: argparse.Namespace) -> int:
    message = run_operation(_revoke_session(load_settings(args.config), args.sid))
    if message is None:
        print(f"no session {args.sid}")
        return 1
    print(message)
    return 0


def cmd_revoke_user(args: argparse.Namespace) -> int:
    print(run_operation(_revoke_user(load_settings(args.config), args.sub)))
    return 0


def cmd_revoke_client(args: argparse.Namespace) -> int:
    print(run_operation(_revoke_client(load_settings(args.config), args.client_id)))
    return 0


def cmd_sessions_list(args: argparse.Namespace) -> int:
    print(json.dumps(run_operation(_sessions(load_settings(args.config), args.sub)), indent=2))
    return 0


def cmd_audit_tail(args: argparse.Namespace) -> int:
    for entry in run_operation(_audit(load_settings(args.config), args.count)):
        print(json.dumps(entry))
    return 0
