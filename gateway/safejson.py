"""JSON from clients and other untrusted sources, parsed with a bounded nesting depth."""

from __future__ import annotations

import json
from typing import Any, Final

MAX_JSON_DEPTH: Final = 32  # nesting of objects/arrays a token, body or message may have


def parse_json(data: bytes | str) -> Any:
    """JSON from a client, with a bounded nesting depth; ValueError for anything else.

    SECURITY: the standard parser recurses once per level and fails with RecursionError on
    deep input, which would otherwise surface as a 500; a depth of MAX_JSON_DEPTH is far
    beyond anything a token or a form needs.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    # Counting brackets (in C) bounds the depth from above; the exact walk is for the rare
    # document with many of them.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting(text) > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply")
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ValueError("JSON nested too deeply") from None


def _nesting(text: str) -> int:
    """An upper bound of the nesting depth (brackets inside strings count too, which only
    makes the bound safer)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in "]}":
            depth -= 1
    return deepest
