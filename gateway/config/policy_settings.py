"""Settings of a route's authorization rules: the `allow` / `deny` rule trees and the host
patterns routes match on. The rules are compiled (and their regular expressions and CEL
expressions checked) by gateway.policy when the configuration is built."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final, TypeAlias

from pydantic import ConfigDict, Field, field_validator, model_validator

from gateway.config.fields import PositiveSeconds, Section

Scalar: TypeAlias = str | int | float | bool
"""A claim value a condition compares with (JSON's scalars)."""

CLAIM_OPERATORS: Final = ("equals", "in", "contains", "matches")
RULE_KINDS: Final = (
    "all",
    "any",
    "not",
    "roles",
    "scopes",
    "claim",
    "client_id",
    "provider",
    "authenticated",
    "session_age_below",
)
MAX_PATTERN_LENGTH: Final = 512
# A DNS name of lower-case labels; `*.` only as the whole first label (one label, as a TLS
# certificate's wildcard).
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_PATTERN_RE: Final = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
METHOD_RE: Final = re.compile(r"^[A-Z][A-Z0-9_-]{0,31}$")


class ClaimCondition(Section):
    """One claim compared by exactly one operator."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True
    )

    name: str = Field(min_length=1, max_length=256)
    """the claim's name (top level of the token's claims)"""
    equals: Scalar | None = None
    """the claim is this value (same JSON type: "1" is not 1)"""
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    """the claim is one of these values"""
    contains: Scalar | None = None
    """the claim is a list holding this value"""
    matches: str | None = Field(default=None, min_length=1, max_length=MAX_PATTERN_LENGTH)
    """the claim is a string whose whole value matches this RE2 regular expression"""

    @model_validator(mode="after")
    def _one_operator(self) -> ClaimCondition:
        given = [op for op, value in self.operators() if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"claim {self.name!r} needs exactly one of {', '.join(CLAIM_OPERATORS)}"
            )
        return self

    def operators(self) -> list[tuple[str, Any]]:
        return [
            ("equals", self.equals),
            ("in", self.in_),
            ("contains", self.contains),
            ("matches", self.matches),
        ]

    def operator(self) -> tuple[str, Any]:
        """(operator, operand) of the one operator given."""
        return next((op, value) for op, value in self.operators() if value is not None)


class RuleSettings(Section):
    """One node of an `allow` or `deny` tree: exactly one of its keys. See docs/policy.md."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True
    )
    # The configuration reference shows a rule tree as one row (docs/policy.md has the rest).
    reference_leaf: ClassVar[bool] = True

    all_: list[RuleSettings] | None = Field(default=None, alias="all", min_length=1)
    """every one of these rules holds"""
    any_: list[RuleSettings] | None = Field(default=None, alias="any", min_length=1)
    """at least one of these rules holds"""
    not_: RuleSettings | None = Field(default=None, alias="not")
    """this rule does not hold"""
    roles: list[str] | None = Field(default=None, min_length=1)
    """the principal holds every one of these roles"""
    scopes: list[str] | None = Field(default=None, min_length=1)
    """the principal holds every one of these scopes"""
    claim: ClaimCondition | None = None
    """a claim compared with equals, in, contains or matches"""
    client_id: list[str] | None = Field(default=None, min_length=1)
    """the token's `client_id` claim is one of these"""
    provider: list[str] | None = Field(default=None, min_length=1)
    """the identity provider that signed the user in is one of these (`gateway` for the
    gateway's own logins)"""
    authenticated: bool | None = None
    """true: a credential was presented and accepted; false: the request is anonymous"""
    session_age_below: PositiveSeconds | None = None
    """the user signed in (auth_time) less than this many seconds ago"""

    @field_validator("client_id", "provider", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> RuleSettings:
        if len(self.kinds()) != 1:
            raise ValueError(f"a rule is exactly one of: {', '.join(RULE_KINDS)}")
        return self

    def kinds(self) -> list[str]:
        return [kind for kind in RULE_KINDS if getattr(self, _ATTRIBUTES[kind]) is not None]

    def kind(self) -> tuple[str, Any]:
        """(kind, value) of the one key this rule has."""
        (kind,) = self.kinds()
        return kind, getattr(self, _ATTRIBUTES[kind])


_ATTRIBUTES: Final = {k: k + "_" if k in ("all", "any", "not") else k for k in RULE_KINDS}

RuleTree: TypeAlias = list[RuleSettings]
"""`allow` / `deny`: one rule, or a list (`allow`: all must hold; `deny`: any denies); one
rule is read as a list of one."""


def one_or_many(value: Any) -> Any:
    """A rule tree's value as a list (`allow: {roles: [a]}` is `allow: [{roles: [a]}]`)."""
    return [value] if isinstance(value, dict) else value


def check_host_pattern(pattern: str) -> str:
    """A `hosts` entry: a lower-case DNS name, or `*.` and a DNS name; no port, no trailing
    dot, no wildcard elsewhere. Raises ValueError saying which."""
    if ":" in pattern:
        raise ValueError(f"host {pattern!r}: no port (routes match the host name only)")
    if pattern.endswith("."):
        raise ValueError(f"host {pattern!r}: write it without the trailing dot")
    if "*" in pattern and not (pattern.startswith("*.") and pattern.count("*") == 1):
        raise ValueError(f"host {pattern!r}: a wildcard is allowed only as the first label (*.)")
    if pattern != pattern.lower():
        raise ValueError(f"host {pattern!r}: write it in lower case (matching ignores case)")
    if not HOST_PATTERN_RE.match(pattern) or len(pattern) > 253:
        raise ValueError(f"host {pattern!r} is not a DNS name or *.<DNS name>")
    return pattern
