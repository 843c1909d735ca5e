"""Rules and routes that can never match, found in the settings alone (`gateway
check-config` reports them): routes no request can reach (a reserved prefix or earlier
routes take all of their requests), `deny` trees that refuse every request, `allow` trees
that no request can satisfy. Expressions are not analysed.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config import RouteSettings, RuleSettings


def never_matching(routes: Sequence[RouteSettings], *, blocked: Sequence[str] = ()) -> list[str]:
    """One line per finding, naming the route."""
    findings: list[str] = []
    for index, route in enumerate(routes):
        name = route.route_name
        prefix = route.prefix.rstrip("/")
        for reserved in blocked:
            if prefix == reserved or prefix.startswith(reserved + "/"):
                findings.append(
                    f"routes[{name}]: under the reserved prefix {reserved} (admin."
                    "block_public_path): it answers 404 and is never proxied"
                )
        taken = _methods_taken_earlier(routes[:index], route)
        if taken is not None and route.methods and set(route.methods) <= taken:
            findings.append(
                f"routes[{name}]: shadowed: earlier routes with the same prefix and hosts "
                f"take all of its methods ({', '.join(sorted(route.methods))})"
            )
        elif taken and route.methods and taken & set(route.methods):
            overlap = ", ".join(sorted(taken & set(route.methods)))
            findings.append(
                f"routes[{name}]: methods {overlap} go to an earlier route with the same "
                "prefix and hosts"
            )
        if route.deny and any(_always(rule, route) is True for rule in route.deny):
            findings.append(f"routes[{name}]: deny refuses every request")
        if route.allow and any(_always(rule, route) is False for rule in route.allow):
            findings.append(f"routes[{name}]: allow can never hold: every request is refused")
    return findings


def _methods_taken_earlier(
    earlier: Sequence[RouteSettings], route: RouteSettings
) -> set[str] | None:
    """Methods that routes listed before `route`, with the same prefix and hosts and their
    own method lists, take first (routes of equal specificity keep the configured order)."""
    same = [
        r
        for r in earlier
        if r.prefix.rstrip("/") == route.prefix.rstrip("/")
        and set(r.hosts) == set(route.hosts)
        and r.methods
    ]
    if not same:
        return None
    return {m for r in same for m in r.methods}


def _always(rule: RuleSettings, route: RouteSettings) -> bool | None:
    """True: the rule holds for every request the route admits to its rules; False: for
    none; None: it depends on the request."""
    kind, value = rule.kind()
    anonymous_only = route.policy == "public"  # a public route never reads a credential
    if kind == "all":
        verdicts = [_always(r, route) for r in value]
        if False in verdicts:
            return False
        return True if all(v is True for v in verdicts) else None
    if kind == "any":
        verdicts = [_always(r, route) for r in value]
        if True in verdicts:
            return True
        return False if all(v is False for v in verdicts) else None
    if kind == "not":
        inner = _always(value, route)
        return None if inner is None else not inner
    if kind == "authenticated":
        if anonymous_only:
            return not value
        if route.policy == "required":
            return bool(value)
        return None
    return False if anonymous_only else None  # every other rule needs a principal
