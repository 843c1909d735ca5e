"""The policy plane alone: rule trees on principals, claim types, RE2 patterns, CEL
expressions that do not compile or cost too much, the memoized decision, explanations and
the rules that can never match."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.config import RouteSettings
from gateway.errors import (
    AuthenticationRequired,
    ConfigError,
    InsufficientScope,
    PolicyDenied,
)
from gateway.policy.access import AccessPolicy
from gateway.policy.claim_patterns import ClaimPattern, PatternInvalid
from gateway.policy.expressions import Expression, ExpressionInvalid
from gateway.policy.host_names import normalize_host
from gateway.policy.shadowing import never_matching
from gateway.tokens.verifier import Principal
from tests.support.clock import FakeClock


def route_settings(**fields: Any) -> RouteSettings:
    return RouteSettings.model_validate(fields)


def principal(**claims: Any) -> Principal:
    claims.setdefault("sub", "alice")
    roles = claims.get("roles", ["user"])
    return Principal(
        sub=claims["sub"],
        sid=claims.get("sid", "s-1"),
        jti="j-1",
        iat=claims.get("iat", 1000.0),
        exp=claims.get("exp", 1e12),
        auth_time=claims.get("auth_time", 1000.0),
        roles=tuple(roles),
        scopes=tuple(claims.get("scope", "").split()),
        claims={k: tuple(v) if isinstance(v, list) else v for k, v in claims.items()},
        provider=claims.get("provider_name"),
    )


def policy(clock: FakeClock | None = None, **fields: Any) -> AccessPolicy:
    settings = route_settings(prefix="/api/", upstream="http://127.0.0.1:9", **fields)
    built = AccessPolicy.from_settings(settings, clock=clock or FakeClock())
    assert built is not None
    return built


def refusal(access: AccessPolicy, who: Principal | None, method: str = "GET") -> Any:
    try:
        access.check(who, method, "api.example.com", "/api/x")
    except (PolicyDenied, InsufficientScope, AuthenticationRequired) as exc:
        return exc
    return None


TREE = {
    "any": [
        {"roles": ["admin"]},
        {
            "all": [
                {"claim": {"name": "groups", "contains": "finance"}},
                {"not": {"client_id": "cli"}},
            ]
        },
    ]
}


@pytest.mark.parametrize(
    ("claims", "admitted"),
    [
        ({"roles": ["admin"]}, True),
        ({"groups": ["finance"]}, True),
        ({"groups": ["finance"], "client_id": "cli"}, False),
        ({"groups": ["sales"]}, False),
        ({"groups": "finance"}, False),  # a string where a list is expected: no substring test
        ({}, False),
    ],
)
def test_rule_trees(claims: dict[str, Any], admitted: bool) -> None:
    access = policy(allow=TREE)
    assert (refusal(access, principal(**claims)) is None) is admitted


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        ({"equals": "blue"}, "blue", True),
        ({"equals": "1"}, 1, False),  # JSON types differ
        ({"equals": 1}, 1.0, True),
        ({"equals": True}, 1, False),  # a bool is no number
        ({"equals": "blue"}, ["blue"], False),  # a list is no single value
        ({"in": ["a", "b"]}, "b", True),
        ({"in": ["a", "b"]}, ["a"], False),
        ({"contains": "a"}, ["a", "b"], True),
        ({"contains": "a"}, "abc", False),
        ({"contains": 2}, [1, 2], True),
        ({"matches": r"[a-z]+@example\.com"}, "eve@example.com", True),
        ({"matches": r"[a-z]+@example\.com"}, "eve@example.com.evil.org", False),  # whole value
        ({"matches": "a+"}, ["a"], False),
        ({"matches": "a+"}, None, False),
    ],
)
def test_claim_operators_and_types(condition: dict[str, Any], value: Any, holds: bool) -> None:
    access = policy(allow={"claim": {"name": "c", **condition}})
    assert (refusal(access, principal(c=value)) is None) is holds


def test_deny_wins_and_refusals_name_the_rule() -> None:
    access = policy(
        allow={"roles": ["user"]},
        deny=[{"provider": "partner-idp"}, {"claim": {"name": "sub", "in": ["mallory"]}}],
    )
    denied = refusal(access, principal(sub="mallory"))
    assert isinstance(denied, PolicyDenied)
    assert (denied.reason, denied.rule) == ("deny", "deny[1]")
    assert "mallory" not in denied.description
    federated = refusal(access, principal(idp="partner-idp"))
    assert isinstance(federated, PolicyDenied) and federated.rule == "deny[0]"
    assert refusal(access, principal()) is None
    nested = policy(
        allow={"all": [{"roles": ["user"]}, {"any": [{"scopes": ["a"]}, {"scopes": ["b"]}]}]}
    )
    assert refusal(nested, principal()).rule == "allow[0].all[1]"


def test_roles_and_scopes_keep_insufficient_scope() -> None:
    access = policy(roles=["reports"], scopes=["read"])
    missing_role = refusal(access, principal(scope="read"))
    assert isinstance(missing_role, InsufficientScope) and missing_role.reason == "role"
    missing_scope = refusal(access, principal(roles=["reports"]))
    assert isinstance(missing_scope, InsufficientScope) and missing_scope.reason == "scope"
    assert refusal(access, principal(roles=["reports"], scope="read")) is None


def test_anonymous_requests() -> None:
    access = policy(policy="optional", allow={"roles": ["user"]})
    assert isinstance(refusal(access, None), AuthenticationRequired)
    bots = policy(policy="optional", deny={"authenticated": False})
    assert isinstance(refusal(bots, None), PolicyDenied)
    assert refusal(bots, principal()) is None


def test_a_decision_is_memoized_with_the_principal_until_the_session_ages() -> None:
    clock = FakeClock()
    access = policy(clock, allow={"session_age_below": 60})
    alice = principal(auth_time=clock.now - 30)
    assert refusal(access, alice) is None
    assert len(alice.derived) == 1  # one decision kept with the token
    assert refusal(access, alice, "POST") is None
    assert len(alice.derived) == 1  # the policy reads no part of the request line
    clock.now += 31
    assert isinstance(refusal(access, alice), PolicyDenied)


def test_expressions_that_read_the_path_are_memoized_within_a_bound() -> None:
    access = policy(expr="request.path.startsWith('/api/')")
    alice = principal()
    for i in range(200):
        access.check(alice, "GET", "h", f"/api/{i}")
    assert len(alice.derived) <= 64


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("claims.groups.exists(g, g ==", "Syntax error"),
        ("claims.sub + 'x'", "not a condition"),
        ("nonsense.field == 1", "undeclared reference"),
        ("request.method == 1", "no matching overload"),
        (
            "claims.a.exists(x, claims.b.exists(y, x == y))",
            "more than the limit",  # a comprehension inside another: quadratic
        ),
    ],
)
def test_bad_expressions_are_configuration_errors_naming_the_route(source: str, says: str) -> None:
    settings = route_settings(prefix="/ledger/", upstream="http://127.0.0.1:9", expr=source)
    with pytest.raises(ConfigError) as caught:
        AccessPolicy.from_settings(settings, clock=time.time)
    assert caught.value.description.startswith("routes[/ledger/].expr: ")
    assert says.lower() in caught.value.description.lower()


def test_an_expression_reads_only_what_it_names() -> None:
    assert Expression("claims.sub == 'a'").reads == frozenset()
    assert Expression("request.method == 'GET'").reads == {"method"}
    assert Expression("request['path'] == '/'").reads == {"method", "path", "host"}
    with pytest.raises(ExpressionInvalid):
        Expression("claims.a.all(x, claims.b.all(y, claims.c.all(z, true)))")


def test_expression_errors_are_refusals_not_crashes() -> None:
    access = policy(expr="claims.level > 3")
    assert refusal(access, principal(level=5)) is None
    assert refusal(access, principal(level=2)).reason == "expr"
    assert refusal(access, principal()).reason == "expr_error"  # no such claim
    assert refusal(access, principal(level="high")).reason == "expr_error"  # wrong type


def test_patterns_run_in_linear_time_and_backtracking_constructs_are_refused() -> None:
    # (a+)+$ takes exponential time in a backtracking engine; RE2 answers at once (a
    # backtracking implementation would hold this test until its timeout)
    assert ClaimPattern("(a+)+").matches("a" * 5000 + "!") is False
    for pattern in (r"(a)\1", "(?=a)a", "(?<!x)a", "("):
        with pytest.raises(PatternInvalid):
            ClaimPattern(pattern)
    settings = route_settings(
        prefix="/x/",
        upstream="http://127.0.0.1:9",
        allow={"claim": {"name": "email", "matches": r"(\w+)\1"}},
    )
    with pytest.raises(ConfigError, match=r"routes\[/x/\]: a claim pattern is invalid"):
        AccessPolicy.from_settings(settings, clock=time.time)


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("api.example.com:8443", "api.example.com"),
        ("API.example.com.:80", "api.example.com"),
        ("[::1]:8080", "[::1]"),
    ],
)
def test_host_names_as_routes_compare_them(host: str, normal: str) -> None:
    assert normalize_host(host) == normal


def test_explanations_show_every_rule() -> None:
    access = policy(allow=TREE, deny={"claim": {"name": "sub", "equals": "mallory"}})
    explanation = access.explain(principal(groups="finance"), "GET", "h", "/api/x", 0)
    text = "\n".join(explanation.lines())
    assert "[no ] deny[0]: claim 'sub' equals …" in text
    assert "the claim is a string; contains needs a list" in text
    assert explanation.refusal is not None and explanation.refusal.rule == "allow[0]"


def test_rules_that_can_never_match() -> None:
    up = "http://127.0.0.1:9"
    findings = never_matching(
        [
            route_settings(prefix="/admin/tools/", upstream=up),
            route_settings(prefix="/o/", name="read", upstream=up, methods=["GET", "POST"]),
            route_settings(prefix="/o/", name="get", upstream=up, methods=["GET"]),
            route_settings(prefix="/a/", upstream=up, deny={"authenticated": True}),
            route_settings(prefix="/p/", upstream=up, policy="public", allow={"roles": ["x"]}),
            route_settings(prefix="/fine/", upstream=up, allow={"roles": ["x"]}),
        ],
        blocked=("/admin",),
    )
    assert findings == [
        "routes[/admin/tools/]: under the reserved prefix /admin (admin.block_public_path): "
        "it answers 404 and is never proxied",
        "routes[get]: shadowed: earlier routes with the same prefix and hosts take all of "
        "its methods (GET, HEAD)",
        "routes[/a/]: deny refuses every request",
        "routes[/p/]: allow can never hold: every request is refused",
    ]
