"""Path normalization and route matching, table by table (unit level, no gateway).

Authorization is decided on the normalized path and that path is what the upstream gets;
these tables pin down what every trick turns into. tests/proxy/test_proxy_corner_cases.py sends
the same tricks through the running gateway."""

from __future__ import annotations

import pytest

from gateway.config import RouteSettings
from gateway.errors import InvalidRequest
from gateway.proxy.routing import (
    FOLDS_TO_SEPARATOR,
    Route,
    RouteTable,
    is_plain_path,
    normalize_path,
)
from gateway.proxy.upstream_group import url_group

NORMALIZED = [
    # already normal: returned as they are
    ("/", "/"),
    ("/api/orders/7", "/api/orders/7"),
    ("/api/orders/", "/api/orders/"),
    ("/a-b_c.d~e/f:g@h!$&'()*+,;=", "/a-b_c.d~e/f:g@h!$&'()*+,;="),
    # dot segments, resolved
    ("/public/../api", "/api"),
    ("/public/./api", "/public/api"),
    ("/a/b/..", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/../../api", "/api"),
    # servlet containers drop ";params" before resolving dots
    ("/public/..;/api", "/api"),
    ("/public/..;x=1/api", "/api"),
    # percent-encoded unreserved characters and dots are decoded
    ("/public/%2e%2e/api", "/api"),
    ("/public/%2E%2E/api", "/api"),
    ("/%61pi", "/api"),
    # encoded separators and backslashes are separators
    ("/public%2f..%2fapi", "/api"),
    ("/public/..%2fapi", "/api"),
    ("/public\\..\\api", "/api"),
    ("/a%5cb", "/a/b"),
    # empty segments merge
    ("//api", "/api"),
    ("/a///b", "/a/b"),
    # reserved characters stay encoded, in upper case
    ("/a%3fb", "/a%3Fb"),
    ("/a%23b", "/a%23b"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    # characters whose compatibility form (NFKC) is ".", "/", "\\" or ";", which some backends
    # fold into it, are folded first: fullwidth full stop, solidus and reverse solidus, ...
    ("/public/%EF%BC%8E%EF%BC%8E/api", "/api"),
    ("/public/%ef%bc%8e%ef%bc%8e/api", "/api"),
    ("/public%EF%BC%8F..%EF%BC%8Fapi", "/api"),
    ("/public/..%EF%BC%BCapi", "/api"),
    ("/public/\uff0e\uff0e/api", "/api"),  # the same characters unescaped
    ("/public/%E2%80%A5/api", "/api"),  # two dot leader: ".."
    ("/public/%EF%B9%92%EF%B9%92/api", "/api"),  # small full stop
    ("/public/..%EF%B9%A8api", "/api"),  # small reverse solidus
    ("/docs/report%EF%BC%8Epdf", "/docs/report.pdf"),
    ("/reports%EF%BC%9Bx=1/q", "/reports;x=1/q"),  # fullwidth semicolon: a path parameter
    # other characters stay as they are (circled one folds to "1", no separator)
    ("/caf%C3%A9/%E2%91%A0", "/caf%C3%A9/%E2%91%A0"),
]


@pytest.mark.parametrize(("raw", "normalized"), NORMALIZED)
def test_normalize_path(raw: str, normalized: str) -> None:
    assert normalize_path(raw) == normalized


REFUSED = [
    "api",  # not absolute
    "*",
    "/a%00b",
    "/%00",
    "/a%zzb",
    "/a%2",
    "/a%",
    "/a\x01b",
    "/a\x7fb",
    "/" + "a" * 9000,
]


@pytest.mark.parametrize("raw", REFUSED)
def test_refused_paths(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("/api/orders/7", True),
        ("/", True),
        ("/api/", True),
        ("/api//x", False),
        ("/api/./x", False),
        ("/api/../x", False),
        ("/api/..;/x", False),
        ("/api/%2e", False),
        ("/api\\x", False),
        ("/" + "a" * 9000, False),
    ],
)
def test_plain_paths_are_left_alone(raw: str, plain: bool) -> None:
    assert is_plain_path(raw) is plain
    if plain:
        assert normalize_path(raw) == raw


def test_the_folding_set_is_every_character_that_folds_to_a_separator() -> None:
    folding = set(FOLDS_TO_SEPARATOR)
    for char in "\uff0e\uff0f\uff3c\u2024\u2025\u2026\ufe52\ufe68\uff1b\u2488":
        assert char in folding, hex(ord(char))
    assert not folding & set(map(chr, range(128)))
    assert "\u2215" not in folding  # division slash: its own compatibility form


@pytest.mark.parametrize(
    "raw", ["/public/%EF%BC%8E%EF%BC%8E/api", "/a%EF%BC%8Fb", "/\uff3c", "/x%E2%80%A5"]
)
def test_folding_characters_can_be_refused(raw: str) -> None:
    routes = RouteTable.from_settings([], path_folding="refuse")
    with pytest.raises(InvalidRequest):
        routes.normalize(raw)
    assert routes.normalize("/caf%C3%A9/%2e") == "/caf%C3%A9/"
    assert RouteTable.from_settings([]).normalize(raw) == normalize_path(raw)


def table() -> RouteTable:
    routes = [
        RouteSettings(prefix="/public/", upstream="http://up", policy="public"),
        RouteSettings(prefix="/reports/", upstream="http://up", roles=["reports"]),
        RouteSettings(prefix="/reports/open/", upstream="http://up", policy="optional"),
        RouteSettings(prefix="/", upstream="http://up"),
    ]
    return RouteTable.from_settings(routes, blocked=("/admin",))


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/public/x", "/public/"),
        ("/public", "/public/"),
        ("/publicity", "/"),  # whole segments only
        ("/reports/q3", "/reports/"),
        ("/reports/open/q3", "/reports/open/"),  # longest prefix first
        ("/reports/opened", "/reports/"),
        ("/admin", "/admin"),
        ("/admin/users", "/admin"),
        ("/administrator", "/"),
        ("/", "/"),
    ],
)
def test_longest_whole_segment_prefix_wins(path: str, route: str) -> None:
    matched = table().match(path, "GET", None)
    assert matched is not None
    assert matched.name == route


def test_reserved_prefixes_are_blocked_routes() -> None:
    admin = table().match("/admin/x", "GET", None)
    assert admin is not None and admin.blocked
    api = table().match("/api", "GET", None)
    assert api is not None and not api.blocked and api.policy == "required"


@pytest.mark.parametrize(
    ("prefix", "upstream", "strip", "path", "sent"),
    [
        ("/api", "http://up", False, "/api/x", "/api/x"),
        ("/api", "http://up", True, "/api/x", "/x"),
        ("/api", "http://up", True, "/api", "/"),
        ("/api", "http://up/base/", False, "/api/x", "/base/api/x"),
        ("/api", "http://up/base", True, "/api/x", "/base/x"),
    ],
)
def test_upstream_path(prefix: str, upstream: str, strip: bool, path: str, sent: str) -> None:
    route = Route(
        prefix,
        url_group(upstream),
        "required",
        frozenset(),
        frozenset(),
        strip,
        False,
        True,
        prefix,
    )
    assert route.upstream_path(path) == sent
