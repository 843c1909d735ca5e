"""Browser-session pieces on their own: reading and writing cookies, sealing, what the
upstream gets, return_to, navigations, device names, and the start-up checks."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from gateway.browser.cookies import CookieFormat, read_cookies
from gateway.browser.login_kinds import device_name_from
from gateway.browser.navigation import is_navigation, prefers_html, safe_return_to
from gateway.browser.seal import (
    ACCESS,
    REFRESH,
    AesGcmSeal,
    PlainCookies,
    cookie_seal,
    load_seal_keys,
)
from gateway.browser.upstream_cookies import is_gateway_set_cookie, without_gateway_cookies
from gateway.config import BrowserSettings, Settings, load_settings
from gateway.errors import ConfigError
from tests.support.gateway_cli import run_cli
from tests.support.repository import EXAMPLE_CONFIG

A, R = "gw_at", "gw_rt"


# ---- reading our cookies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "access", "refresh", "duplicated"),
    [
        ([], None, None, False),
        (["a=1; b=2"], None, None, False),
        ([f"{A}=x; {R}=y"], "x", "y", False),
        ([f"  {A} = x ;{R}=y  "], "x", "y", False),
        ([f'{A}="x"'], "x", None, False),
        # malformed foreign cookies before ours do not hide ours
        ([f'bad"cookie; =noname; novalue; x=="; ;;{A}=x'], "x", None, False),
        ([f'theme="unterminated; {R}=y'], None, "y", False),
        # split over two Cookie fields (HTTP/2 style)
        (["a=1", f"{A}=x", f"{R}=y"], "x", "y", False),
        # two values for one name: reported, never picked
        ([f"{A}=x; {A}=z"], "z", None, True),
        ([f"{A}=x", f"{A}=x"], "x", None, True),
        ([f"{R}=y; a=1; {R}=w"], None, "w", True),
        # names match exactly: case variants and prefixes of ours are somebody else's
        ([f"{A.upper()}=x; gw_at2=y; x{R}=z"], None, None, False),
        ([f"{A}="], None, None, False),
    ],
)
def test_read_cookies(
    headers: list[str], access: str | None, refresh: str | None, duplicated: bool
) -> None:
    got = read_cookies(headers, A, R)
    assert (got.access, got.refresh, got.duplicated) == (access, refresh, duplicated)


def test_lowercase_host_prefix_is_not_our_cookie() -> None:
    got = read_cookies(["__host-gw_at=x; __Host-gw_rt=y"], "__Host-gw_at", "__Host-gw_rt")
    assert (got.access, got.refresh) == (None, "y")


def test_set_cookie_rendering() -> None:
    production = CookieFormat(BrowserSettings())
    assert production.access("v", 899.2) == (
        "__Host-gw_at=v; Max-Age=900; Path=/; HttpOnly; SameSite=Lax; Secure"
    )
    assert production.cleared()[1] == (
        "__Host-gw_rt=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure"
    )
    strict = CookieFormat(
        BrowserSettings(secure=False, same_site="strict", access_cookie=A, refresh_cookie=R)
    )
    assert strict.refresh("v", 10) == f"{R}=v; Max-Age=10; Path=/; HttpOnly; SameSite=Strict"
    assert "Domain" not in strict.refresh("v", 10) + production.access("v", 1)


# ---- what the upstream gets and may send back ---------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"a=1; gw_at=x; b=2; gw_rt=y"], b"a=1; b=2"),
        ([b"gw_at=x; gw_rt=y"], b""),
        ([b'theme="dark mode";  a=1;gw_at=x;b=%00'], b'theme="dark mode"; a=1; b=%00'),
        ([b"a=1", b"gw_rt=y", b"b=2"], b"a=1; b=2"),
        ([b"GW_AT=kept; gw_at2=kept; __host-gw_at=kept"], None),
        ([b'bad"; =x; novalue; gw_at=x'], b'bad"; =x; novalue'),
    ],
)
def test_upstream_cookie_header(values: list[bytes], expected: bytes | None) -> None:
    names = frozenset({b"gw_at", b"gw_rt", b"__Host-gw_at"})
    assert without_gateway_cookies(values, names) == (
        expected if expected is not None else values[0]
    )


@pytest.mark.parametrize(
    ("value", "ours"),
    [
        ("gw_at=x; Path=/", True),
        ("GW_RT=x", True),
        (" gw_at =x", True),
        ("gw_at2=x", False),
        ("session=gw_at", False),
        ("=gw_at=x", True),
        ("__Host-gw_at=x; Secure; Path=/", True),
        ("__secure-GW_RT=x", True),
        ('"gw_at"=x', True),
        ("a=1, gw_at=x", True),
        ("a=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Path=/", False),
        ("__Host-gw_atx=1", False),
        ("=session", False),
    ],
)
def test_upstream_set_cookie_for_our_names(value: str, ours: bool) -> None:
    assert is_gateway_set_cookie(value, frozenset({"gw_at", "gw_rt"})) is ours


# ---- sealing --------------------------------------------------------------------------------


def test_sealed_values_open_only_for_their_purpose_and_show_nothing() -> None:
    seal = AesGcmSeal([("k1", b"\x01" * 32)])
    token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.sig"
    sealed = seal.seal(token, ACCESS)
    assert sealed.startswith("k1.") and "alice" not in sealed and "eyJ" not in sealed
    assert seal.seal(token, ACCESS) != sealed  # a fresh nonce every time
    opened = seal.open(sealed, ACCESS)
    assert opened is not None and opened.value == token and not opened.stale_key
    assert seal.open(sealed, REFRESH) is None  # an access value is no refresh value
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for bad in (tampered, "k2" + sealed[2:], "k1", "k1.", "k1.@@@@", "x" * 5000, sealed + "="):
        assert seal.open(bad, ACCESS) is None


def test_key_rotation_newest_seals_every_key_opens() -> None:
    old = AesGcmSeal([("old", b"\x01" * 32)])
    rotated = AesGcmSeal([("new", b"\x02" * 32), ("old", b"\x01" * 32)])
    sealed_before = old.seal("value", REFRESH)
    opened = rotated.open(sealed_before, REFRESH)
    assert opened is not None and opened.value == "value" and opened.stale_key
    assert rotated.seal("value", REFRESH).startswith("new.")
    assert AesGcmSeal([("new", b"\x02" * 32)]).open(sealed_before, REFRESH) is None


def test_plain_cookies_when_sealing_is_off() -> None:
    plain = PlainCookies()
    assert plain.seal("tok", ACCESS) == "tok"
    opened = plain.open("tok", ACCESS)
    assert opened is not None and opened.value == "tok"
    assert plain.open("x" * 5000, ACCESS) is None
    assert isinstance(cookie_seal(BrowserSettings(seal_cookies=False)), PlainCookies)


def test_seal_keys_from_files_and_environment(tmp_path: Path) -> None:
    good = base64.urlsafe_b64encode(b"\x07" * 32).decode().rstrip("=")
    (tmp_path / "k.key").write_text(good + "\n")
    settings = BrowserSettings(
        seal_keys=[
            {"id": "file", "secret_file": tmp_path / "k.key"},  # type: ignore[list-item]
            {"id": "env", "secret_env": "COOKIE_KEY"},  # type: ignore[list-item]
        ]
    )
    keys = load_seal_keys(settings, {"COOKIE_KEY": good + "="})
    assert keys == [("file", b"\x07" * 32), ("env", b"\x07" * 32)]
    with pytest.raises(ConfigError, match=r"browser.seal_keys\[1\] \(env\).*COOKIE_KEY is not set"):
        load_seal_keys(settings, {})


@pytest.mark.parametrize(
    "content", ["short", base64.urlsafe_b64encode(b"x" * 16).decode(), "!" * 43, ""]
)
def test_bad_seal_key_material_is_a_start_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "k.key").write_text(content)
    settings = BrowserSettings(seal_keys=[{"id": "k", "secret_file": tmp_path / "k.key"}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"browser.seal_keys\[0\] \(k\): a sealing key is 32"):
        load_seal_keys(settings, {})


# ---- navigations and return_to --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("/", True),
        ("/app/orders?tab=2&x=%20y", True),
        ('/"><script>alert(1)</script>', True),  # a local path: kept, and escaped where shown
        (None, False),
        ("", False),
        ("app", False),
        ("//evil.example/", False),
        ("/\\evil.example/", False),
        ("\\\\evil.example", False),
        ("https://evil.example/", False),
        ("javascript:alert(1)", False),
        ("/%2F/evil.example", False),
        ("/%2f%2fevil.example", False),
        ("%2F%2Fevil.example", False),
        ("/%5Cevil.example", False),
        ("/%252F%252Fevil.example", False),
        ("/%25252F%25252Fevil.example", False),
        ("/\t/evil.example", False),
        ("/%09/evil.example", False),
        ("/ok\r\nSet-Cookie: x=1", False),
        ("/ok%0d%0aSet-Cookie:%20x=1", False),
        ("/x y", False),
        ("/" + "a" * 3000, False),
    ],
)
def test_return_to_is_relative_only(value: str | None, kept: bool) -> None:
    assert safe_return_to(value) == (value if kept else "/")


@pytest.mark.parametrize(
    ("method", "headers", "navigation"),
    [
        ("GET", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, True),
        ("GET", {"Sec-Fetch-Mode": "navigate"}, True),
        ("GET", {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, False),
        ("GET", {"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, False),
        ("POST", {"Sec-Fetch-Mode": "navigate"}, False),
        ("GET", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, True),
        ("GET", {"Accept": "application/json, text/html;q=0.9"}, False),
        ("GET", {"Accept": "*/*"}, False),
        ("GET", {}, False),
    ],
)
def test_navigation(method: str, headers: dict[str, str], navigation: bool) -> None:
    assert is_navigation(make_mocked_request(method, "/x", headers=headers)) is navigation


def test_prefers_html_takes_the_highest_quality() -> None:
    assert prefers_html("application/json;q=0.5, text/html;q=0.9")
    assert not prefers_html("text/html;q=0, application/json")
    assert not prefers_html("text/html;q=bad, application/json")


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            "Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Windows",
        ),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1", "Safari on iOS"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0 Safari/537.36",
            "Headless Chrome on Linux",
        ),
        ("curl/8.5.0", "curl"),
        (None, "Browser"),
        ("<script>\x00", "Browser"),
    ],
)
def test_device_names(agent: str | None, name: str) -> None:
    assert device_name_from(agent) == name


# ---- start-up checks ------------------------------------------------------------------------


def browser(**keys: Any) -> dict[str, Any]:
    return {"enabled": True, "seal_cookies": False, **keys}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"browser": browser(same_site="none")}, "'none' is refused"),
        ({"browser": browser(same_site="None")}, "'none' is refused"),
        ({"browser": browser(same_site="loose")}, "browser.same_site"),
        ({"browser": browser(secure=False)}, "the __Host-/__Secure- prefixes need secure: true"),
        (
            {"browser": browser(secure=False, access_cookie="a", refresh_cookie="b")},
            "browser.secure: false is allowed only outside environment: production",
        ),
        ({"browser": browser(access_cookie="x", refresh_cookie="x")}, "must differ"),
        ({"browser": browser(access_cookie="bad name")}, "browser.access_cookie"),
        ({"browser": browser(access_cookie="a;b")}, "browser.access_cookie"),
        ({"browser": browser(seal_cookies=True)}, "seal_cookies needs at least one key"),
        ({"browser": browser(allowed_origins=["http://x/path"])}, "is not an origin"),
        ({"browser": browser(allowed_origins=["null"])}, "is not an origin"),
        ({"browser": browser(login_page=False)}, "redirect needs login_page"),
        ({"browser": browser(seal_keys=[{"id": "k"}])}, "exactly one of secret_file"),
        (
            {"routes": [{"prefix": "/", "upstream": "http://x", "browser": "sometimes"}]},
            "routes.0.browser",
        ),
    ],
)
def test_bad_browser_settings_stop_the_start(
    tmp_path: Path, data: dict[str, Any], named: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert named in exc.value.description


def test_browser_mode_needs_a_signing_key_and_plain_http_outside_production() -> None:
    with pytest.raises(ValidationError, match="needs a signing key"):
        Settings(browser=browser(secure=True))  # type: ignore[arg-type]
    ok = BrowserSettings(secure=False, access_cookie="a", refresh_cookie="b", seal_cookies=False)
    assert not ok.secure
    # a disabled section is not held to the rules of an enabled one
    assert not BrowserSettings(secure=False).enabled


def test_allowed_origins_are_kept_as_browsers_send_them() -> None:
    origins = BrowserSettings(
        allowed_origins=["HTTPS://App.Example:443", "http://h:80", "http://h:8080", "https://h:80"]
    ).allowed_origins
    assert origins == ["https://app.example", "http://h", "http://h:8080", "https://h:80"]


@pytest.mark.slow
def test_cli_cookie_key_generate(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "cookie.key"
    result = run_cli("cookie-key", "generate", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert "browser.seal_keys" in result.stdout and str(out) in result.stdout
    settings = BrowserSettings(seal_keys=[{"id": "c", "secret_file": out}])  # type: ignore[list-item]
    assert len(load_seal_keys(settings)[0][1]) == 32
    assert run_cli("cookie-key", "generate", "--out", str(out)).returncode == 1
    assert run_cli("cookie-key", "generate", "--out", str(out), "--if-missing").returncode == 0


def test_the_demo_configuration_runs_browser_mode_on_plain_http() -> None:
    settings = load_settings(EXAMPLE_CONFIG)
    b = settings.browser
    assert b.enabled and not b.secure and settings.environment == "demo"
    assert not b.access_cookie.startswith("__") and b.seal_cookies
    assert b.allowed_origins == ["http://127.0.0.1:8080"]


async def test_the_identity_provider_kind_plugs_in_an_exchange() -> None:
    from gateway.authserver.token_service import Device, TokenPair
    from gateway.browser.login_kinds import PasswordLogin, SubjectTokenLogin, choose
    from gateway.errors import InvalidRequest, UnsupportedGrantType

    calls: list[tuple[str, str, Device]] = []
    pair = cast(TokenPair, object())  # what the exchange returns goes back as it is

    async def exchange(token: str, token_type: str, device: Device) -> TokenPair:
        calls.append((token, token_type, device))
        return pair

    kind = SubjectTokenLogin(exchange)
    id_token = "eyJ" + "a" * 3000
    params = {"subject_token": id_token, "subject_token_type": "urn:x:id_token"}
    assert choose([kind, PasswordLogin(None)], params) is kind  # type: ignore[arg-type]
    assert await kind.open_session(params, Device(ip="10.0.0.1")) is pair
    assert calls == [(id_token, "urn:x:id_token", Device(ip="10.0.0.1"))]
    for bad in (
        {"subject_token": 5, "subject_token_type": "t"},
        {"subject_token": "x" * 20000, "subject_token_type": "t"},
        {"subject_token": "x"},  # no type
    ):
        with pytest.raises(InvalidRequest):
            await kind.open_session(bad, Device())
    with pytest.raises(UnsupportedGrantType):
        await SubjectTokenLogin().open_session(params, Device())
