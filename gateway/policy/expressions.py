"""Route expressions in Google's Common Expression Language, on cel-expr-python (the C++
runtime): compiled and type-checked once when the configuration is built, their worst case
bounded (gateway.policy.expression_cost), evaluated on a principal's claims and the request
line only: `claims` (the token's claims; `{}` for an anonymous request) and `request` with
`method`, `path` and `host`.

Only this module and gateway.policy.claim_patterns call cel-expr-python; what it raises or
returns as an error leaves them as ExpressionInvalid (compiling) or a failed evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import cel_expr_python.cel as cel

from gateway.policy.expression_cost import MalformedTree, tree_facts

MAX_COST: Final = 1_000_000  # evaluation steps: a comprehension inside another is refused
REQUEST_FIELDS: Final = frozenset({"method", "path", "host"})

ENVIRONMENT: Final = cel.NewEnv(
    variables={
        "claims": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
        "request": cel.Type.Map(cel.Type.STRING, cel.Type.STRING),
    }
)
_BOOL: Final = cel.Type.BOOL
_DYN: Final = cel.Type.DYN
_ERROR: Final = cel.Type.ERROR


class ExpressionInvalid(ValueError):
    """An expression that does not compile, is not a condition, or may cost too much."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """An evaluation: true, false, or failed (`error`, e.g. a claim the token lacks)."""

    value: bool
    error: str | None = None


class Expression:
    """One compiled CEL condition."""

    def __init__(self, source: str, *, max_cost: int = MAX_COST):
        self.source = source
        try:
            self._program = ENVIRONMENT.compile(source)
        except RuntimeError as exc:  # the parser's and type checker's report
            raise ExpressionInvalid(_first_line(str(exc))) from None
        result = self._program.return_type()
        if result != _BOOL and result != _DYN:
            raise ExpressionInvalid(f"the expression is a {result.name()}, not a condition")
        try:
            facts = tree_facts(self._program.serialize())
        except MalformedTree as exc:
            raise ExpressionInvalid(f"cannot bound the expression's cost ({exc})") from None
        if facts.cost > max_cost:
            raise ExpressionInvalid(
                f"the expression may take {facts.cost:,} steps, more than the limit of "
                f"{max_cost:,} (a comprehension inside another?)"
            )
        self.cost = facts.cost
        fields = facts.request_fields
        # which parts of the request line the outcome depends on (decisions are memoized by them)
        self.reads: frozenset[str] = REQUEST_FIELDS if "*" in fields else frozenset(fields)

    def evaluate(self, claims: Mapping[str, Any], method: str, path: str, host: str) -> Outcome:
        """The expression on these claims and request line; never raises."""
        data = {
            "claims": cel_value(claims),
            "request": {"method": method, "path": path, "host": host},
        }
        try:
            result = self._program.eval(data=data)
        except (RuntimeError, TypeError, ValueError) as exc:
            return Outcome(False, _first_line(str(exc)))
        kind = result.type()
        if kind == _ERROR:
            return Outcome(False, _first_line(str(result.value())))
        if kind != _BOOL:  # a dyn that turned out to be no condition (never its value: a claim)
            return Outcome(False, f"the expression gave a {kind.name()}, not a bool")
        return Outcome(bool(result.value()))


def cel_value(value: Any) -> Any:
    """A claim as CEL takes it: tuples (how a Principal keeps JSON arrays) as lists."""
    if type(value) is tuple or type(value) is list:
        return [cel_value(item) for item in value]
    if type(value) is dict:
        return {key: cel_value(item) for key, item in value.items()}
    return value


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:300] if message.strip() else "evaluation failed"
