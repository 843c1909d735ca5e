"""The `allow` / `deny` rule trees, compiled: each node answers whether it holds for a
principal (None: an anonymous request) at an instant, and explains how it came to that.

Nodes are named by their place in the tree (`allow[0].any[1]`), which is what a refusal's
description and the access log carry: a rule's values (a deny list of users, a group
name) never go back to the client.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from gateway.config import ClaimCondition, RuleSettings, Scalar
from gateway.policy.claim_patterns import ClaimPattern

if TYPE_CHECKING:
    from gateway.tokens.verifier import Principal

NEVER: Final = math.inf
GATEWAY_PROVIDER: Final = "gateway"  # `provider:` name of the gateway's own logins
PROVIDER_CLAIM: Final = "idp"  # the provider a gateway session was opened from


@dataclass
class Explained:
    """One node's result, for `policy explain`: its place, what it says, why."""

    path: str
    text: str
    holds: bool
    note: str | None = None
    children: list[Explained] = field(default_factory=list)

    def lines(self, depth: int = 0) -> list[str]:
        mark = "yes" if self.holds else "no "
        note = f"  ({self.note})" if self.note else ""
        out = [f"{'  ' * depth}[{mark}] {self.path}: {self.text}{note}"]
        for child in self.children:
            out += child.lines(depth + 1)
        return out


class Rule(ABC):
    """A node of a rule tree: each kind says whether it holds for a principal."""

    path: str
    text: str

    @abstractmethod
    def holds(self, principal: Principal | None, now: float) -> bool: ...

    def explain(self, principal: Principal | None, now: float) -> Explained:
        return Explained(self.path, self.text, self.holds(principal, now))

    def changes_at(self, principal: Principal | None, now: float) -> float:
        """The next instant at which this node's result may change (NEVER: it will not)."""
        return NEVER


class AllOf(Rule):
    def __init__(self, path: str, rules: Sequence[Rule], text: str = "all of"):
        self.path, self.text, self.rules = path, text, tuple(rules)

    def holds(self, principal: Principal | None, now: float) -> bool:
        return all(rule.holds(principal, now) for rule in self.rules)

    def explain(self, principal: Principal | None, now: float) -> Explained:
        children = [rule.explain(principal, now) for rule in self.rules]
        return Explained(self.path, self.text, all(c.holds for c in children), None, children)

    def changes_at(self, principal: Principal | None, now: float) -> float:
        return min((r.changes_at(principal, now) for r in self.rules), default=NEVER)


class AnyOf(AllOf):
    def __init__(self, path: str, rules: Sequence[Rule], text: str = "any of"):
        super().__init__(path, rules, text)

    def holds(self, principal: Principal | None, now: float) -> bool:
        return any(rule.holds(principal, now) for rule in self.rules)

    def explain(self, principal: Principal | None, now: float) -> Explained:
        children = [rule.explain(principal, now) for rule in self.rules]
        return Explained(self.path, self.text, any(c.holds for c in children), None, children)


class Not(Rule):
    def __init__(self, path: str, rule: Rule):
        self.path, self.text, self.rule = path, "not", rule

    def holds(self, principal: Principal | None, now: float) -> bool:
        return not self.rule.holds(principal, now)

    def explain(self, principal: Principal | None, now: float) -> Explained:
        inner = self.rule.explain(principal, now)
        return Explained(self.path, self.text, not inner.holds, None, [inner])

    def changes_at(self, principal: Principal | None, now: float) -> float:
        return self.rule.changes_at(principal, now)


class HoldsAll(Rule):
    """`roles` / `scopes`: the principal holds every one of them."""

    def __init__(self, path: str, kind: str, wanted: Sequence[str]):
        self.path, self.kind, self.wanted = path, kind, frozenset(wanted)
        self.text = f"{kind} {sorted(self.wanted)}"

    def held(self, principal: Principal) -> tuple[str, ...]:
        return principal.roles if self.kind == "roles" else principal.scopes

    def holds(self, principal: Principal | None, now: float) -> bool:
        return principal is not None and self.wanted.issubset(self.held(principal))

    def explain(self, principal: Principal | None, now: float) -> Explained:
        if principal is None:
            return Explained(self.path, self.text, False, "anonymous")
        missing = sorted(self.wanted.difference(self.held(principal)))
        return Explained(
            self.path, self.text, not missing, f"missing {missing}" if missing else None
        )


class ClaimRule(Rule):
    """`claim: {name, equals | in | contains | matches}`; a claim of another type than the
    operator needs (a string where `contains` needs a list, …) does not hold."""

    def __init__(self, path: str, condition: ClaimCondition):
        self.path, self.name = path, condition.name
        self.operator, operand = condition.operator()
        self.operand: Any = operand
        self.pattern = ClaimPattern(operand) if self.operator == "matches" else None
        shown = "[…]" if self.operator == "in" else "…"
        self.text = f"claim {self.name!r} {self.operator} {shown}"

    def holds(self, principal: Principal | None, now: float) -> bool:
        return self._verdict(principal)[0]

    def explain(self, principal: Principal | None, now: float) -> Explained:
        holds, note = self._verdict(principal)
        return Explained(self.path, self.text, holds, note)

    def _verdict(self, principal: Principal | None) -> tuple[bool, str | None]:
        if principal is None:
            return False, "anonymous"
        claims: Mapping[str, Any] = principal.claims
        if self.name not in claims:
            return False, "the token has no such claim"
        value = claims[self.name]
        if self.operator == "equals":
            return _scalar_check(value, lambda v: same_value(v, self.operand))
        if self.operator == "in":
            return _scalar_check(value, lambda v: any(same_value(v, o) for o in self.operand))
        if self.operator == "contains":
            if type(value) is not tuple and type(value) is not list:
                return False, f"the claim is {json_type(value)}; contains needs a list"
            return any(same_value(item, self.operand) for item in value), None
        assert self.pattern is not None
        if type(value) is not str:
            return False, f"the claim is {json_type(value)}; matches needs a string"
        return self.pattern.matches(value), None


class ClientRule(Rule):
    """`client_id`: the token's client_id claim is one of these."""

    def __init__(self, path: str, clients: Sequence[str]):
        self.path, self.clients = path, frozenset(clients)
        self.text = f"client_id in {sorted(self.clients)}"

    def holds(self, principal: Principal | None, now: float) -> bool:
        return principal is not None and principal.claims.get("client_id") in self.clients


class ProviderRule(Rule):
    """`provider`: the identity provider that signed the user in: a provider's own token
    (Principal.provider), the provider a gateway session was opened from (its `idp` claim),
    or `gateway` for the gateway's own logins."""

    def __init__(self, path: str, providers: Sequence[str]):
        self.path, self.providers = path, frozenset(providers)
        self.text = f"provider in {sorted(self.providers)}"

    def holds(self, principal: Principal | None, now: float) -> bool:
        return principal is not None and provider_of(principal) in self.providers

    def explain(self, principal: Principal | None, now: float) -> Explained:
        if principal is None:
            return Explained(self.path, self.text, False, "anonymous")
        provider = provider_of(principal)
        return Explained(
            self.path, self.text, provider in self.providers, f"signed in by {provider}"
        )


class Authenticated(Rule):
    def __init__(self, path: str, wanted: bool):
        self.path, self.wanted = path, wanted
        self.text = "authenticated" if wanted else "anonymous"

    def holds(self, principal: Principal | None, now: float) -> bool:
        return (principal is not None) is self.wanted


class SessionAgeBelow(Rule):
    """`session_age_below`: the user signed in (auth_time) less than `seconds` ago."""

    def __init__(self, path: str, seconds: float):
        self.path, self.seconds = path, seconds
        self.text = f"session younger than {seconds:g} s"

    def holds(self, principal: Principal | None, now: float) -> bool:
        return principal is not None and now - principal.auth_time < self.seconds

    def explain(self, principal: Principal | None, now: float) -> Explained:
        if principal is None:
            return Explained(self.path, self.text, False, "anonymous")
        age = now - principal.auth_time
        return Explained(self.path, self.text, age < self.seconds, f"signed in {age:.0f} s ago")

    def changes_at(self, principal: Principal | None, now: float) -> float:
        if principal is None:
            return NEVER
        ends = principal.auth_time + self.seconds
        return ends if ends > now else NEVER


def compile_rule(settings: RuleSettings, path: str) -> Rule:
    """The node for one rule's settings; raises PatternInvalid for a bad `matches`."""
    kind, value = settings.kind()
    if kind in ("all", "any"):
        inner = [compile_rule(r, f"{path}.{kind}[{i}]") for i, r in enumerate(value)]
        return (AllOf if kind == "all" else AnyOf)(path, inner)
    if kind == "not":
        return Not(path, compile_rule(value, path + ".not"))
    if kind in ("roles", "scopes"):
        return HoldsAll(path, kind, value)
    if kind == "claim":
        return ClaimRule(path, value)
    if kind == "client_id":
        return ClientRule(path, value)
    if kind == "provider":
        return ProviderRule(path, value)
    if kind == "authenticated":
        return Authenticated(path, value)
    return SessionAgeBelow(path, value)


def provider_of(principal: Principal) -> str:
    if principal.provider is not None:
        return principal.provider
    signed_in_by = principal.claims.get(PROVIDER_CLAIM)
    return signed_in_by if isinstance(signed_in_by, str) else GATEWAY_PROVIDER


def same_value(claim: Any, wanted: Scalar) -> bool:
    """JSON equality of two scalars: a string is never a number, a bool never a number."""
    if type(claim) is bool or type(wanted) is bool:
        return type(claim) is type(wanted) and claim == wanted
    if isinstance(claim, int | float) and isinstance(wanted, int | float):
        return claim == wanted
    return type(claim) is type(wanted) and claim == wanted


def _scalar_check(value: Any, test: Any) -> tuple[bool, str | None]:
    if isinstance(value, tuple | list | dict) or value is None:
        return False, f"the claim is {json_type(value)}; equals and in need a single value"
    return bool(test(value)), None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple | list):
        return "a list"
    return "an object"
