"""The worst-case cost of a compiled CEL expression, read from its checked syntax tree.

cel-expr-python serializes a compiled expression as a `cel.expr.CheckedExpr` (in a
`google.protobuf.Any`); this module reads the protobuf wire format of that message (only
what it needs: the expression tree) and bounds the work an evaluation can do. Every node
costs one step; the body of a comprehension (`all`, `exists`, `exists_one`, `map`,
`filter`) runs once per element of its range, and a range has at most MAX_RANGE elements
(a list in a verified token: the token is at most 8 KiB, and a JSON list takes two bytes an
element). One comprehension over the claims is cheap; one inside another is quadratic and
refused by the usual limit. String functions are linear in their arguments, which the
token's and the request line's size bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

MAX_RANGE: Final = 4096
# cel.expr.Expr fields
_IDENT, _SELECT, _CALL, _LIST, _STRUCT, _COMPREHENSION = 4, 5, 6, 7, 8, 9
# Any.value, CheckedExpr.expr
_ANY_VALUE, _CHECKED_EXPR = 2, 4


class MalformedTree(ValueError):
    """The serialized expression is not what this reader understands."""


@dataclass
class TreeFacts:
    """What an expression's tree says: its worst-case steps and the request fields it reads
    (`*` when it reads `request` other than by a constant field name)."""

    cost: int = 0
    request_fields: set[str] = field(default_factory=set)


def tree_facts(serialized: bytes) -> TreeFacts:
    """Cost and request fields of a serialized (Any-wrapped) CheckedExpr."""
    checked = _field(serialized, _ANY_VALUE)
    expr = _field(checked, _CHECKED_EXPR)
    facts = TreeFacts()
    facts.cost = _cost(expr, facts, depth=0)
    return facts


def _cost(expr: bytes, facts: TreeFacts, depth: int) -> int:
    if depth > 200:
        raise MalformedTree("expression nested too deeply")
    fields = dict(_submessages(expr))
    if _SELECT in fields:
        select = dict(_fields(fields[_SELECT]))
        operand = select.get(1, b"")
        name = select.get(2, b"")
        if isinstance(operand, bytes) and _ident_name(operand) == "request":
            facts.request_fields.add(name.decode() if isinstance(name, bytes) else "*")
            return 2
        return 1 + (_cost(operand, facts, depth + 1) if isinstance(operand, bytes) else 0)
    if _IDENT in fields:
        if _ident_name(expr) == "request":
            facts.request_fields.add("*")  # the whole map: any field may be read
        return 1
    if _CALL in fields:
        total = 1
        for number, value in _fields(fields[_CALL]):
            if number in (1, 3) and isinstance(value, bytes):  # target, args
                total += _cost(value, facts, depth + 1)
        return total
    if _LIST in fields:
        return 1 + sum(
            _cost(v, facts, depth + 1)
            for n, v in _fields(fields[_LIST])
            if n == 1 and isinstance(v, bytes)
        )
    if _STRUCT in fields:
        total = 1
        for number, entry in _fields(fields[_STRUCT]):
            if number == 2 and isinstance(entry, bytes):
                for n, v in _fields(entry):
                    if n in (3, 4) and isinstance(v, bytes):  # map key, value
                        total += _cost(v, facts, depth + 1)
        return total
    if _COMPREHENSION in fields:
        parts = dict(_fields(fields[_COMPREHENSION]))

        def part(number: int) -> int:
            value = parts.get(number)
            return _cost(value, facts, depth + 1) if isinstance(value, bytes) else 0

        once = part(2) + part(4) + part(7)  # range, accumulator's start, result
        per_element = part(5) + part(6)  # loop condition and step
        return 1 + once + MAX_RANGE * per_element
    return 1  # a constant


def _ident_name(expr: bytes) -> str | None:
    ident = dict(_submessages(expr)).get(_IDENT)
    if ident is None:
        return None
    name = dict(_fields(ident)).get(1)
    return name.decode() if isinstance(name, bytes) else None


def _field(message: bytes, number: int) -> bytes:
    for n, value in _fields(message):
        if n == number and isinstance(value, bytes):
            return value
    raise MalformedTree(f"field {number} missing")


def _submessages(message: bytes) -> Iterator[tuple[int, bytes]]:
    for number, value in _fields(message):
        if isinstance(value, bytes):
            yield number, value


def _fields(message: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, bytes of a length-delimited field or a scalar's value) in order."""
    position, end = 0, len(message)
    while position < end:
        key, position = _varint(message, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(message, position)
            yield number, value
        elif wire == 1:
            position += 8
            yield number, 0
        elif wire == 2:
            length, position = _varint(message, position)
            if position + length > end:
                raise MalformedTree("truncated field")
            yield number, message[position : position + length]
            position += length
        elif wire == 5:
            position += 4
            yield number, 0
        else:
            raise MalformedTree(f"wire type {wire}")


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise MalformedTree("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
