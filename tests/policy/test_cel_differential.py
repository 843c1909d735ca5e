"""Differential test of route expressions: generated CEL conditions on generated claim sets
and request lines, evaluated by the gateway (cel-expr-python, Google's C++ runtime) and by
an independent implementation (common-expression-language, the Rust one); they must agree
on every case: true, false, or an evaluation error (which the gateway answers as a refusal).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Final

import cel  # the Rust implementation: a test-only dependency

from gateway.policy.expressions import Expression

SEED: Final = 20240611
EXPRESSIONS: Final = 600
CLAIM_SETS: Final = 6  # each expression on this many claim sets: 3,600 cases
GROUPS: Final = ("finance", "staff", "ops", "admin", "sales")
NAMES: Final = ("alice", "bob", "carol", "mallory")
METHODS: Final = ("GET", "POST", "DELETE", "HEAD")
HOSTS: Final = ("api.example.com", "partners.example.com", "eu.partners.example.com")
PATHS: Final = ("/api/orders", "/api/orders/7", "/reports/q3", "/admin/x", "/")


class Generator:
    """Random conditions over the gateway's variables, well-typed for CEL's checker."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def string(self) -> str:
        pick = self.rng.choice
        return pick(
            [
                "claims.sub",
                "claims.email",
                "request.method",
                "request.path",
                "request.host",
                f"'{pick(NAMES)}'",
                f"'{pick(GROUPS)}'",
            ]
        )

    def condition(self, depth: int = 0) -> str:
        rng, pick = self.rng, self.rng.choice
        if depth < 3 and rng.random() < 0.45:
            op = pick(["&&", "||", "&&", "||", "?"])
            if op == "?":
                test, yes, no = (self.condition(depth + 1) for _ in range(3))
                return f"({test} ? {yes} : {no})"
            return f"({self.condition(depth + 1)} {op} {self.condition(depth + 1)})"
        if depth < 3 and rng.random() < 0.1:
            return f"!({self.condition(depth + 1)})"
        kind = rng.randrange(14)
        if kind == 0:
            return f"'{pick(GROUPS)}' in claims.groups"
        if kind == 1:
            return f"claims.sub == '{pick(NAMES)}'"
        if kind == 2:
            return f"request.method {pick(['==', '!='])} '{pick(METHODS)}'"
        if kind == 3:
            return f"request.path.startsWith('{pick(PATHS)}')"
        if kind == 4:
            return (
                f"request.host.endsWith('{pick(['.example.com', 'partners.example.com', '.org'])}')"
            )
        if kind == 5:
            return f"claims.level {pick(['<', '<=', '>', '>=', '==', '!='])} {rng.randrange(6)}"
        if kind == 6:
            return f"claims.groups.exists(g, g.startsWith('{pick(GROUPS)[:2]}'))"
        if kind == 7:
            return f"claims.groups.all(g, g != '{pick(GROUPS)}')"
        if kind == 8:
            return f"size(claims.groups) {pick(['>', '==', '<'])} {rng.randrange(4)}"
        if kind == 9:
            return f"has(claims.{pick(['email', 'level', 'groups', 'team'])})"
        if kind == 10:
            return f"{self.string()}.contains('{pick(['a', 'ex', 'orders', 'o'])}')"
        if kind == 11:
            return f"{self.string()} {pick(['==', '!='])} {self.string()}"
        if kind == 12:
            return f"claims.email.matches('^[a-z]+@{pick(['example', 'corp'])}[.]com$')"
        return f"claims.groups.exists_one(g, g == '{pick(GROUPS)}')"

    def claims(self) -> dict[str, Any]:
        rng = self.rng
        claims: dict[str, Any] = {"sub": rng.choice(NAMES)}
        if rng.random() < 0.8:
            claims["groups"] = rng.sample(GROUPS, rng.randrange(len(GROUPS) + 1))
        if rng.random() < 0.7:
            claims["level"] = rng.randrange(6)
        if rng.random() < 0.7:
            claims["email"] = f"{claims['sub']}@{rng.choice(['example', 'corp', 'evil'])}.com"
        return claims

    def request(self) -> dict[str, str]:
        pick = self.rng.choice
        return {"method": pick(METHODS), "path": pick(PATHS), "host": pick(HOSTS)}


def reference(program: Any, claims: dict[str, Any], request: dict[str, str]) -> str:
    try:
        value = program.execute({"claims": claims, "request": request})
    except Exception:  # the Rust bindings raise several types for evaluation errors
        return "error"
    return str(value) if isinstance(value, bool) else "error"


def test_the_gateway_and_a_second_implementation_agree() -> None:
    generator = Generator(random.Random(SEED))
    outcomes: Counter[str] = Counter()
    disagreements = []
    for _ in range(EXPRESSIONS):
        source = generator.condition()
        ours = Expression(source)
        theirs = cel.compile(source)
        for _ in range(CLAIM_SETS):
            claims, request = generator.claims(), generator.request()
            result = ours.evaluate(
                {k: tuple(v) if isinstance(v, list) else v for k, v in claims.items()},
                request["method"],
                request["path"],
                request["host"],
            )
            mine = "error" if result.error is not None else str(result.value)
            other = reference(theirs, claims, request)
            outcomes[mine] += 1
            if mine != other:
                disagreements.append((source, claims, request, mine, other))
    cases = sum(outcomes.values())
    assert cases == EXPRESSIONS * CLAIM_SETS
    # every kind of outcome is exercised, not only one
    assert min(outcomes["True"], outcomes["False"], outcomes["error"]) > cases // 20, outcomes
    assert disagreements == [], f"{len(disagreements)} of {cases} disagree: {disagreements[:5]}"
