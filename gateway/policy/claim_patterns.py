"""`claim: {matches: …}` patterns: RE2 regular expressions (linear time, no backtracking),
run by the CEL runtime's own RE2, anchored so that the whole value must match.

SECURITY: a backtracking engine (Python's `re`) can take exponential time on patterns such
as `(a+)+$`; RE2 cannot, and refuses what would need backtracking (backreferences,
lookaround) when the pattern is loaded.
"""

from __future__ import annotations

from typing import Final

import cel_expr_python.cel as cel

_ENVIRONMENT: Final = cel.NewEnv(variables={"value": cel.Type.STRING})
_BOOL: Final = cel.Type.BOOL
_PLAIN: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-")


class PatternInvalid(ValueError):
    """A pattern RE2 does not accept."""


class ClaimPattern:
    """A compiled pattern: `matches(value)` is true when the whole string matches."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        literal = _cel_string(f"^(?:{pattern})$")
        try:
            self._program = _ENVIRONMENT.compile(f"value.matches({literal})")
        except RuntimeError as exc:
            raise PatternInvalid(str(exc).strip().splitlines()[0]) from None
        result = self._program.eval(data={"value": ""})  # RE2 reports a bad pattern here
        if result.type() != _BOOL:
            message = str(result.value()).strip().splitlines()[0]
            raise PatternInvalid(message.removeprefix("INVALID_ARGUMENT: "))

    def matches(self, value: str) -> bool:
        result = self._program.eval(data={"value": value})
        return result.type() == _BOOL and bool(result.value())


def _cel_string(text: str) -> str:
    """A CEL string literal of `text`, every character but letters and digits escaped."""
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in _PLAIN:
            parts.append(char)
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)
