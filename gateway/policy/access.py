"""A route's access policy: its `deny` and `allow` trees, the `roles` / `scopes` it has
always had (an `allow` of `all`), and its CEL `expr`, decided in that order. Deny wins.

The decision for a principal is memoized with it (`Principal.derived`), keyed by the
policy and the parts of the request line the policy reads (only an expression reads any),
so a cached token's next request on the route costs one dict lookup; a decision that
depends on the session's age is kept only until that age is reached.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway.config import RouteSettings
from gateway.errors import (
    AuthenticationRequired,
    ClientFault,
    ConfigError,
    InsufficientScope,
    PolicyDenied,
)
from gateway.policy.claim_patterns import PatternInvalid
from gateway.policy.expressions import Expression, ExpressionInvalid
from gateway.policy.host_names import normalize_host
from gateway.policy.rules import NEVER, AllOf, AnyOf, Explained, HoldsAll, Rule, compile_rule
from gateway.typedefs import Clock

if TYPE_CHECKING:
    from gateway.tokens.verifier import Principal

# Why a request was refused: the access log's `reason` and the metric's label (bounded).
REASONS: Final = ("deny", "allow", "expr", "expr_error", "role", "scope")
MAX_LINE_KEYED: Final = 64  # decisions keyed by a path or host kept on one principal
MAX_ANONYMOUS: Final = 256
_TAGS: Final = itertools.count()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: a reason code and the rule that decided (its place)."""

    reason: str
    rule: str


@dataclass
class Explanation:
    """`policy explain`'s account of one decision."""

    route: str
    steps: list[Explained]
    refusal: Refusal | None
    anonymous: bool

    def lines(self) -> list[str]:
        out = []
        for step in self.steps:
            out += step.lines(1)
        return out


class AccessPolicy:
    """Decides whether a principal (None: anonymous) may use one route."""

    def __init__(
        self,
        route: str,
        *,
        grants: Rule | None = None,
        allow: Rule | None = None,
        deny: Rule | None = None,
        expression: Expression | None = None,
        clock: Clock,
    ):
        self.route = route
        self.grants = grants  # today's `roles` / `scopes`: 403 insufficient_scope
        self.allow = allow
        self.deny = deny
        self.expression = expression
        self._clock = clock
        self._tag = next(_TAGS)
        reads = expression.reads if expression is not None else frozenset()
        self._reads_method = "method" in reads
        self._reads_host = "host" in reads
        self._reads_path = "path" in reads
        self._anonymous: dict[Hashable, tuple[Refusal | None, float]] = {}
        reads_line = self._reads_method or self._reads_host or self._reads_path
        self._static_key: tuple[int, str | None, str | None, str | None] | None = (
            None if reads_line else (self._tag, None, None, None)
        )

    @classmethod
    def from_settings(cls, settings: RouteSettings, *, clock: Clock) -> AccessPolicy | None:
        """The route's policy; None when it has nothing to check. A bad `matches` pattern or
        expression is a ConfigError naming the route."""
        name = settings.route_name
        try:
            grants = [
                HoldsAll(kind, kind, values)
                for kind, values in (("roles", settings.roles), ("scopes", settings.scopes))
                if values
            ]
            allow = deny = None
            if settings.allow:
                rules = [compile_rule(r, f"allow[{i}]") for i, r in enumerate(settings.allow)]
                allow = rules[0] if len(rules) == 1 else AllOf("allow", rules)
            if settings.deny:
                rules = [compile_rule(r, f"deny[{i}]") for i, r in enumerate(settings.deny)]
                deny = rules[0] if len(rules) == 1 else AnyOf("deny", rules)
            expression = Expression(settings.expr) if settings.expr is not None else None
        except PatternInvalid as exc:
            raise ConfigError(f"routes[{name}]: a claim pattern is invalid: {exc}") from None
        except ExpressionInvalid as exc:
            raise ConfigError(f"routes[{name}].expr: {exc}") from None
        if not (grants or allow or deny or expression):
            return None
        granted: Rule | None = None
        if grants:
            granted = AllOf("roles/scopes", grants) if len(grants) > 1 else grants[0]
        return cls(
            name,
            grants=granted,
            allow=allow,
            deny=deny,
            expression=expression,
            clock=clock,
        )

    def check(self, principal: Principal | None, method: str, host: str, path: str) -> None:
        """Raise the refusal (403, or 401 for an anonymous request) unless the policy admits
        the request; memoized with the principal."""
        key = self._static_key
        if key is None:  # the expression reads the request line: decided by its parts
            if self._reads_host:
                host = normalize_host(host)
            key = (
                self._tag,
                method if self._reads_method else None,
                host if self._reads_host else None,
                path if self._reads_path else None,
            )
        memo: dict[Hashable, Any] = principal.derived if principal is not None else self._anonymous
        hit = memo.get(key)
        if hit is None or (hit[1] != NEVER and self._clock() >= hit[1]):
            now = self._clock()
            hit = (self.decide(principal, method, host, path, now), self.changes_at(principal, now))
            if principal is None:
                if len(memo) >= MAX_ANONYMOUS:
                    memo.clear()
                memo[key] = hit
            elif (key[2] is None and key[3] is None) or len(memo) < MAX_LINE_KEYED:
                memo[key] = hit
        refusal = hit[0]
        if refusal is not None:
            raise self.refusal_error(refusal, anonymous=principal is None)

    def decide(
        self, principal: Principal | None, method: str, host: str, path: str, now: float
    ) -> Refusal | None:
        """None when admitted, else why not: deny, then roles/scopes, allow, expression."""
        if self.deny is not None and self.deny.holds(principal, now):
            return Refusal("deny", _deciding(self.deny, principal, now))
        if self.grants is not None and not self.grants.holds(principal, now):
            failed = _deciding(self.grants, principal, now)
            return Refusal("scope" if failed == "scopes" else "role", failed)
        if self.allow is not None and not self.allow.holds(principal, now):
            return Refusal("allow", _deciding(self.allow, principal, now))
        if self.expression is not None:
            claims = principal.claims if principal is not None else {}
            outcome = self.expression.evaluate(claims, method, path, host)
            if outcome.error is not None:
                return Refusal("expr_error", "expr")
            if not outcome.value:
                return Refusal("expr", "expr")
        return None

    def changes_at(self, principal: Principal | None, now: float) -> float:
        rules = [r for r in (self.deny, self.grants, self.allow) if r is not None]
        return min((r.changes_at(principal, now) for r in rules), default=NEVER)

    def explain(
        self, principal: Principal | None, method: str, host: str, path: str, now: float
    ) -> Explanation:
        host = normalize_host(host)
        steps = []
        if self.deny is not None:
            steps.append(_titled("deny (refuses when it holds)", self.deny.explain(principal, now)))
        if self.grants is not None:
            steps.append(_titled("roles/scopes (must hold)", self.grants.explain(principal, now)))
        if self.allow is not None:
            steps.append(_titled("allow (must hold)", self.allow.explain(principal, now)))
        if self.expression is not None:
            claims = principal.claims if principal is not None else {}
            outcome = self.expression.evaluate(claims, method, path, host)
            steps.append(Explained("expr", self.expression.source, outcome.value, outcome.error))
        return Explanation(
            self.route,
            steps,
            self.decide(principal, method, host, path, now),
            principal is None,
        )

    def refusal_error(self, refusal: Refusal, *, anonymous: bool) -> ClientFault:
        """The answer to a refusal. Anonymous requests that a credential could change are
        401 (sign in); today's roles and scopes keep their 403 insufficient_scope."""
        if anonymous and refusal.reason != "deny":
            return AuthenticationRequired("this route's rules need an authenticated request")
        if refusal.reason == "role":
            return InsufficientScope("a required role is missing", reason="role")
        if refusal.reason == "scope":
            return InsufficientScope("a required scope is missing", reason="scope")
        return PolicyDenied(
            f"refused by rule {refusal.rule} of route {self.route}",
            reason=refusal.reason,
            rule=refusal.rule,
        )


def _deciding(rule: Rule, principal: Principal | None, now: float) -> str:
    """The place of the rule that decided: the first branch that holds of an `any` that
    holds, the first that fails of an `all` that fails, else the node itself."""
    node: Explained = rule.explain(principal, now)
    while node.children:
        if (node.text == "any of" and node.holds) or (node.text == "all of" and not node.holds):
            node = next(c for c in node.children if c.holds == node.holds)
        else:
            break
    return node.path


def _titled(title: str, explained: Explained) -> Explained:
    return Explained(title.split(" ")[0], title, explained.holds, None, [explained])
