"""What crosses the gateway in each direction, table by table (unit level, no gateway).

tests/proxy/test_proxy_corner_cases.py checks the same policy through the running gateway."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import ProxySettings
from gateway.proxy.headers import HeaderPolicy, header_value
from gateway.tokens.verifier import Principal


def principal(**claims: Any) -> Principal:
    base = {"sub": "alice", "sid": "s1", "jti": "j1", "roles": ("user", "ops"), **claims}
    return Principal(
        sub=base["sub"],
        sid=base["sid"],
        jti=base["jti"],
        iat=0,
        exp=1,
        auth_time=0,
        roles=tuple(base["roles"]),
        scopes=(),
        claims=base,
    )


def forwarded(
    sent: list[tuple[str, str]],
    *,
    settings: ProxySettings | None = None,
    who: Principal | None = None,
    remote: str = "10.0.0.7",
) -> list[tuple[str, str]]:
    """The header fields the upstream would receive for these client fields."""
    policy = HeaderPolicy(settings or ProxySettings())
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in sent]
    headers = CIMultiDictProxy(CIMultiDict(sent))
    fields = policy.upstream_request_fields(
        raw,
        headers,
        principal=who,
        request_id="req-12345678",
        remote=remote,
        scheme="http",
        host="gw.example",
        upstream_host="backend:9000",
    )
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in fields]


def names(fields: list[tuple[str, str]]) -> list[str]:
    return [n.lower() for n, _ in fields]


# (client header, forwarded?) with the default settings and no trusted proxy
DROPPED_OR_KEPT = [
    ("Accept", True),
    ("X-Custom", True),
    ("Cookie", True),
    ("Authorization", False),  # proxy.forward_authorization is off
    ("Connection", False),
    ("Keep-Alive", False),
    ("Proxy-Connection", False),
    ("Proxy-Authorization", False),
    ("TE", False),
    ("Trailer", False),
    ("Transfer-Encoding", False),
    ("Upgrade", False),
    ("Content-Length", False),  # the forwarder frames the body itself
    ("Expect", False),
    ("Host", False),
    ("X-Forwarded-For", False),
    ("X-Forwarded-Host", False),
    ("X-Forwarded-Proto", False),
    ("X-Forwarded-Port", False),
    ("X-Real-IP", False),
    ("Forwarded", False),
    ("X-Request-Id", False),
    ("X-User-Id", False),
    ("x-user-id", False),
    ("X_User_Id", False),
    ("X-User-Anything", False),  # under an identity prefix
    ("X-Auth-Token", False),
    ("X-Session-Id", False),
    ("X_Session_Id", False),
    # names a CGI/WSGI backend folds into the same variable as their `-` spelling, and
    # nginx drops by default: proxy.underscore_headers
    ("X_Custom", False),
    ("x_forwarded_user", False),
    ("Accept_Language", False),
    # CGI meta-variables as header names (gunicorn takes SCRIPT_NAME from one), in any
    # spelling: proxy.strip_request_headers
    ("SCRIPT_NAME", False),
    ("Script-Name", False),
    ("PATH_INFO", False),
    ("path-info", False),
    ("QUERY_STRING", False),
    ("REQUEST_METHOD", False),
    ("REQUEST_URI", False),
    ("REMOTE_USER", False),
    ("Remote-User", False),
    ("REMOTE_ADDR", False),
    ("SERVER_NAME", False),
    ("AUTH_TYPE", False),
]


@pytest.mark.parametrize(("name", "kept"), DROPPED_OR_KEPT)
def test_client_header_crosses_or_not(name: str, kept: bool) -> None:
    fields = forwarded([(name, "client-value")])
    assert ("client-value" in [v for _, v in fields]) is kept, fields


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("X_Custom", True),
        ("Accept_Language", True),
        ("X_User_Id", False),  # an identity header's spelling is never forwarded
        ("X_Forwarded_For", False),  # nor one the gateway sets
        ("X_Original_URL", False),  # nor a URL override
        ("SCRIPT_NAME", False),  # nor a CGI meta-variable
        ("Path_Info", False),
    ],
)
def test_underscores_forwarded_when_configured(name: str, kept: bool) -> None:
    settings = ProxySettings(underscore_headers="forward")
    fields = forwarded([(name, "client-value")], settings=settings)
    assert ("client-value" in [v for _, v in fields]) is kept, fields


def test_cgi_names_are_configurable() -> None:
    settings = ProxySettings(strip_request_headers=["X-Original-URL"], underscore_headers="forward")
    assert ("SCRIPT_NAME", "/x") in forwarded([("SCRIPT_NAME", "/x")], settings=settings)


def test_gateway_fields_are_set_once_and_win() -> None:
    fields = forwarded(
        [("X-Forwarded-For", "6.6.6.6"), ("X-User-Id", "mallory"), ("Host", "evil")],
        who=principal(),
    )
    as_dict = dict(fields)
    assert as_dict == {
        "Host": "backend:9000",
        "X-Forwarded-For": "10.0.0.7",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "gw.example",
        "X-Request-Id": "req-12345678",
        "X-User-Id": "alice",
        "X-User-Roles": "user,ops",
        "X-Session-Id": "s1",
    }
    assert len(fields) == len(as_dict)  # exactly one of each


def test_connection_names_more_hop_by_hop_fields_but_never_ours() -> None:
    fields = forwarded(
        [
            ("Connection", "X-Custom, X-Forwarded-For, X-User-Id, X-Request-Id"),
            ("X-Custom", "1"),
            ("X-Other", "2"),
        ],
        who=principal(),
    )
    assert "x-custom" not in names(fields)
    assert "x-other" in names(fields)
    for ours in ("x-forwarded-for", "x-user-id", "x-request-id"):
        assert names(fields).count(ours) == 1


def test_trusted_proxy_values_are_kept_and_appended() -> None:
    settings = ProxySettings(trusted_proxies=["10.0.0.0/8"])
    sent = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")]
    trusted = dict(forwarded(sent, settings=settings))
    assert trusted["X-Forwarded-For"] == "1.2.3.4, 10.0.0.7"
    assert trusted["X-Forwarded-Proto"] == "https"
    untrusted = dict(forwarded(sent, settings=settings, remote="192.0.2.1"))
    assert untrusted["X-Forwarded-For"] == "192.0.2.1"
    assert untrusted["X-Forwarded-Proto"] == "http"


def test_authorization_forwarded_only_when_configured() -> None:
    settings = ProxySettings(forward_authorization=True)
    assert ("Authorization", "Bearer t") in forwarded(
        [("Authorization", "Bearer t")], settings=settings
    )


def test_configured_identity_mapping() -> None:
    settings = ProxySettings(identity_headers={"sub": "X-Remote-User", "email": "X-Email"})
    fields = dict(
        forwarded([("X-Remote-User", "forged")], settings=settings, who=principal(email="a@x"))
    )
    assert fields["X-Remote-User"] == "alice"
    assert fields["X-Email"] == "a@x"
    assert "X-User-Id" not in fields


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("alice", "alice"),
        (("a", "b"), "a,b"),
        (["a", 1], "a,1"),
        (True, "true"),
        (42, "42"),
        (None, None),
        ({"nested": 1}, None),
        ("line\r\nX-Injected: 1", "line%0D%0AX-Injected: 1"),
        # a value of a list cannot add a value the upstream splits out
        (["staff,reports", "user"], "staff%2Creports,user"),
        (["50%", "a b"], "50%25,a b"),
        (["caf\u00e9,x"], "caf%C3%A9%2Cx"),
        ("staff,reports", "staff,reports"),  # one value: the header is not a list
        ("caf\u00e9", "caf%C3%A9"),
    ],
)
def test_claim_as_header_value(claim: Any, value: str | None) -> None:
    assert header_value(claim) == value


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("Content-Type", True),
        ("X-Upstream", True),
        ("Set-Cookie", True),
        ("Connection", False),
        ("Keep-Alive", False),
        ("Transfer-Encoding", False),
        ("Content-Length", False),  # the gateway frames the response itself
        ("Upgrade", False),
        ("Proxy-Authenticate", False),
    ],
)
def test_upstream_response_header_crosses_or_not(name: str, kept: bool) -> None:
    out = HeaderPolicy(ProxySettings()).downstream_response_headers(
        [(name.encode(), b"v"), (b"Connection", b"X-Named"), (b"X-Named", b"1")]
    )
    assert (name in out) is kept
    assert "X-Named" not in out
