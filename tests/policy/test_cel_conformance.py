"""The cel-spec conformance cases (tests/policy/cel_spec/, vendored from google/cel-spec's
tests/simple/testdata; see the README there) for the subset route expressions support, run
through the gateway's own CEL environment: checked expressions (the gateway never compiles
an unchecked one) without variables of their own or protocol buffer messages, whose value
is a scalar, a list or a map. Every supported case must pass; how many there are is checked
too, so the subset cannot shrink unnoticed."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from gateway.policy.expressions import ENVIRONMENT

HERE: Final = Path(__file__).parent / "cel_spec"
FILES: Final = (
    "basic",
    "comparisons",
    "conversions",
    "fp_math",
    "integer_math",
    "lists",
    "logic",
    "macros",
    "plumbing",
    "string",
)
MIN_SUPPORTED: Final = 673  # of 821 (`make test` prints the count)
_TOKEN: Final = re.compile(
    r'\s*(?:#[^\n]*\n|([{}:\[\],])|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([^\s{}:\[\],]+))'
)
_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "?": "?",
}


def tokens(text: str) -> Iterator[str]:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        token = match.group(1) or match.group(2) or match.group(3)
        if token:
            yield token


def unquote(literal: str) -> bytes:
    """A text-format string literal's bytes (C escapes, octal and hex included)."""
    body, out, i = literal[1:-1], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert digits is not None
            out.append(int(digits.group(), 8))
            i += 1 + len(digits.group())
        elif nxt == "x":
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2 :])
            assert digits is not None
            out.append(int(digits.group(), 16))
            i += 2 + len(digits.group())
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode()
            i += 2 + width
        else:
            out += _ESCAPES[nxt].encode()
            i += 2
    return bytes(out)


def parse(stream: list[str], position: int = 0) -> tuple[list[tuple[str, Any]], int]:
    """A text-format message as (field, value) pairs (nested messages as lists of pairs),
    and where it ends; adjacent string literals are one string."""
    fields: list[tuple[str, Any]] = []
    while position < len(stream):
        name = stream[position]
        position += 1
        if name == "}":
            return fields, position
        following = stream[position]
        position += 1
        if following == ":":
            following = stream[position]
            position += 1
        if following == "{":
            inner, position = parse(stream, position)
            fields.append((name, inner))
        elif following[0] in "\"'":
            value = unquote(following)
            while position < len(stream) and stream[position][0] in "\"'":
                value += unquote(stream[position])
                position += 1
            fields.append((name, value))
        else:
            fields.append((name, following))
    return fields, position


def field(message: list[tuple[str, Any]], name: str) -> Any:
    return next((value for key, value in message if key == name), None)


class Unsupported(Exception):
    """A value outside what route expressions deal in."""


def expected(value: list[tuple[str, Any]]) -> Any:
    ((kind, raw),) = value
    if kind == "bool_value":
        return raw == "true"
    if kind in ("int64_value", "uint64_value"):
        return int(raw)
    if kind == "double_value":
        return float(raw.replace("inf", "inf"))
    if kind == "string_value":
        return raw.decode()
    if kind == "bytes_value":
        return raw
    if kind == "null_value":
        return None
    if kind == "list_value":
        return [expected(v) for k, v in raw if k == "values"]
    if kind == "map_value":
        return {
            _hashable(expected(field(entry, "key"))): expected(field(entry, "value"))
            for k, entry in raw
            if k == "entries"
        }
    raise Unsupported(kind)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def same(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, float):
        return isinstance(actual, float) and (
            actual == wanted or (math.isnan(actual) and math.isnan(wanted))
        )
    if isinstance(actual, bytearray):
        actual = bytes(actual)
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return type(actual) is type(wanted) and actual == wanted
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(same(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    if isinstance(wanted, dict):
        return (
            isinstance(actual, dict)
            and set(map(_hashable, actual)) == set(wanted)
            and all(same(actual[k], wanted[_hashable(k)]) for k in actual)
        )
    return type(actual) is type(wanted) and actual == wanted


def cases() -> list[Any]:
    found = []
    for name in FILES:
        document, _ = parse(list(tokens((HERE / f"{name}.textproto").read_text())))
        for key, section in document:
            if key != "section":
                continue
            for test_key, test in section:
                if test_key != "test":
                    continue
                title = f"{name}/{field(section, 'name').decode()}/{field(test, 'name').decode()}"
                found.append(pytest.param(test, id=title))
    return found


def supported(test: list[tuple[str, Any]]) -> bool:
    keys = {key for key, _ in test}
    if keys & {"disable_check", "type_env", "bindings", "container", "typed_result"}:
        return False
    source = field(test, "expr").decode()
    if "google.protobuf" in source or "TestAllTypes" in source:
        return False  # protocol buffer messages are outside route expressions
    if "value" in keys:
        try:
            expected(field(test, "value"))
        except Unsupported:
            return False
        return True
    return "eval_error" in keys


CASES: Final = cases()
SUPPORTED: Final = [case for case in CASES if supported(case.values[0])]


@pytest.mark.parametrize("test", SUPPORTED)
def test_conformance(test: list[tuple[str, Any]]) -> None:
    source = field(test, "expr").decode()
    result = ENVIRONMENT.compile(source).eval(data={"claims": {}, "request": {}})
    if field(test, "eval_error") is not None:
        assert result.type().name() == "ERROR", result.value()
        return
    assert result.type().name() != "ERROR", result.value()
    assert same(result.plain_value(), expected(field(test, "value")))


def test_the_supported_subset_is_most_of_the_vendored_cases() -> None:
    assert len(CASES) == 821
    assert len(SUPPORTED) >= MIN_SUPPORTED, len(SUPPORTED)
