"""`gateway policy explain`: how the configured routes decide one request, without a running
gateway or Redis (the token is verified with the configured keys; revocations are not
consulted, and rate limits are listed, not counted)."""

from __future__ import annotations

import argparse
import sys
import time

from gateway.cli.arguments import config_arg
from gateway.config import load_settings
from gateway.errors import GatewayError, InvalidToken
from gateway.proxy.routing import RouteTable, normalize_path
from gateway.tokens.keys import load_keyring
from gateway.tokens.verifier import Principal, TokenVerifier

EXIT_ADMITTED = 0
EXIT_REFUSED = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's subcommands."""
    policy = sub.add_parser("policy", help="authorization rules of the routes").add_subparsers(
        dest="policy_command", required=True, metavar="ACTION"
    )
    explain = policy.add_parser(
        "explain",
        help="the route a request goes to, each of its rules' results and the decision; "
        "exit status 0 when admitted, 1 when refused (no running gateway or Redis needed: "
        "revocations are not consulted)",
    )
    config_arg(explain)
    explain.add_argument(
        "--token", help="the access token (verified with the configured keys); none: anonymous"
    )
    explain.add_argument("--method", default="GET", help="request method (default: GET)")
    explain.add_argument("--path", required=True, help="request path, as sent (/api/orders?x)")
    explain.add_argument("--host", default="", help="Host header (default: none)")
    explain.set_defaults(func=cmd_policy_explain)


def cmd_policy_explain(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    routes = RouteTable.from_settings(
        settings.routes,
        blocked=("/admin",) if settings.admin.block_public_path else (),
        path_parameters=settings.proxy.path_parameters,
    )
    method = args.method.upper()
    out = sys.stdout.write
    try:
        path = normalize_path(args.path.split("?", 1)[0])
        route, forwarded = routes.resolve(path, method, args.host or None)
    except GatewayError as exc:
        out(f"decision: refused, {exc.status} {exc.code} ({exc.description})\n")
        return EXIT_REFUSED
    out(f"request: {method} {path}" + (f" (Host: {args.host})" if args.host else "") + "\n")
    if route is None or route.blocked:
        out("route: none\ndecision: refused, 404 not_found\n")
        return EXIT_REFUSED
    details = [f"prefix {route.prefix or '/'}", f"policy {route.policy}"]
    if route.hosts:
        details.append(f"hosts {', '.join(route.hosts)}")
    if route.methods:
        details.append(f"methods {', '.join(sorted(route.methods))}")
    out(f"route: {route.name} ({'; '.join(details)}) → {route.upstream}{forwarded}\n")

    principal: Principal | None = None
    if args.token and route.policy != "public":
        verifier = TokenVerifier.from_settings(
            load_keyring(settings.keys), settings.tokens, clock=time.time, cache_size=0
        )
        try:
            principal = verifier.verify(args.token)
        except InvalidToken as exc:
            out(f"token: refused ({exc.reason}: {exc.description})\n")
            out("decision: refused, 401 invalid_token\n")
            return EXIT_REFUSED
        roles = ", ".join(principal.roles) or "none"
        out(f"token: valid, sub {principal.sub}, sid {principal.sid}, roles {roles}\n")
        out("  (revocations are not consulted: the gateway may still refuse a revoked token)\n")
    elif args.token:
        out("token: not read (a public route)\n")
    elif route.policy == "required":
        out("token: none\ndecision: refused, 401 (a bearer access token is required)\n")
        return EXIT_REFUSED
    else:
        out("token: none (anonymous)\n")

    refused: GatewayError | None = None
    if route.access is None:
        out("rules: none\n")
    else:
        explanation = route.access.explain(principal, method, args.host, forwarded, time.time())
        out("rules:\n")
        for line in explanation.lines():
            out(line + "\n")
        if explanation.refusal is not None:
            refused = route.access.refusal_error(explanation.refusal, anonymous=principal is None)
    configured = {r.route_name: r for r in settings.routes}.get(route.name)
    for limit in configured.limits if configured is not None else ():
        out(
            f"limit: {limit.rate:g} per {limit.per:g} s, burst {limit.size}, per {limit.key} "
            "(not counted here)\n"
        )
    if refused is not None:
        out(f"decision: refused, {refused.status} {refused.code} ({refused.description})\n")
        return EXIT_REFUSED
    out("decision: admitted\n")
    return EXIT_ADMITTED
