"""Rendering the console's pages: Jinja2 templates with autoescaping on for every value, and
the headers every console answer carries."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = HERE / "static"
BASE_PATH: Final = "/admin/console/"

# SECURITY: only the gateway's own assets, no inline script or style (a value that escaped
# escaping still could not run), never framed (clickjacking on the revoke buttons).
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it Chromium sends `Origin: null` on the console's own form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PAGE_HEADERS: Final = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Pragma": "no-cache"}


def utc_time(value: float | None) -> str:
    """A Unix time as `2026-12-02 17:47:10 UTC` (pages show UTC; the script adds local)."""
    if value is None or value <= 0:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_minute(value: float | None) -> str:
    """A Unix time as `2026-12-02 17:47` (UTC; table cells, with the seconds in a title)."""
    if value is None or value <= 0:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M")


def iso_time(value: float | None) -> str:
    if value is None or value <= 0:
        return ""
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """Seconds as `42 s`, `3 min 5 s`, `2 h 10 min`, `4 d 3 h`."""
    if seconds is None:
        return "—"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), sort_keys=True, ensure_ascii=False)


class Pages:
    """The console's Jinja2 environment; `render` answers a page with the console headers."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # SECURITY: every value is HTML-escaped unless a template says not
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(
            utc=utc_time, utc_minute=utc_minute, iso=iso_time, duration=duration, json=compact_json
        )
        self._env.globals["base"] = BASE_PATH
        self._env.globals["asset_version"] = str(int(time.time()))

    def html(self, template: str, context: Mapping[str, Any]) -> str:
        return self._env.get_template(template).render(**context)

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        return web.Response(
            text=self.html(template, context),
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={**PAGE_HEADERS, **(headers or {})},
        )


def wants_html(request: web.Request) -> bool:
    """A browser navigation or form post (errors as pages); other clients get JSON."""
    return "text/html" in request.headers.get("Accept", "")


def see_other(location: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """303 after a form post (POST/redirect/GET: reloading never repeats an action)."""
    return web.Response(
        status=303, headers={**PAGE_HEADERS, "Location": location, **(headers or {})}
    )
