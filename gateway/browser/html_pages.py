"""The gateway's HTML pages (login, devices) and their stylesheet.

Plain forms that work without JavaScript and load nothing from elsewhere. Every value a page
shows is escaped, whatever its source (a return_to, a username, a device name or user agent
a client chose); the templates are `string.Template`s filled with escaped text only.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from string import Template
from typing import Final
from urllib.parse import quote

from aiohttp import web

from gateway.edge import PRIVATE_NO_STORE
from gateway.store import Session

# SECURITY: nothing but our own stylesheet and forms posting to ourselves; never framed
# (clickjacking a login or sign-out button), no referrer leaking return_to elsewhere.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": PRIVATE_NO_STORE,
}
_ROW: Final = Template(
    """      <tr>
        <td>$device$current<span class="agent" title="$agent">$agent</span></td>
        <td class="when">$last_used</td>
        <td>$ip</td>
        <td class="when">$created</td>
        <td>
          <form method="post" action="/auth/browser/devices/signout">
            <input type="hidden" name="sid" value="$sid">
            <button type="submit" aria-label="Sign out $device">Sign out</button>
          </form>
        </td>
      </tr>"""
)


@cache
def _template(name: str) -> Template:
    return Template((resources.files(__package__) / "templates" / name).read_text("utf-8"))


@cache
def stylesheet() -> bytes:
    return (resources.files(__package__) / "static" / "browser.css").read_bytes()


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(instant: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(instant))


def page(body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def login_page(
    return_to: str,
    *,
    username: str = "",
    message: str | None = None,
    providers: Sequence[tuple[str, str]] = (),
    password: bool = True,
) -> str:
    """The sign-in page: a button per identity provider (name, what it says), then (unless
    `password` is false) the password form."""
    notice = f'<p class="error" role="alert">{_e(message)}</p>' if message else ""
    buttons = ""
    if providers:
        back = quote(return_to, safe="")
        links = "\n".join(
            f'    <a class="provider" id="provider-{_e(name)}" '
            f'href="/auth/browser/login/{_e(name)}?return_to={_e(back)}">'
            f"Sign in with {_e(label)}</a>"
            for name, label in providers
        )
        buttons = f'  <div class="providers">\n{links}\n  </div>\n'
        if password:
            buttons += '  <p class="or">or with your password</p>\n'
    form = ""
    if password:
        form = _template("password_form.html").substitute(
            return_to=_e(return_to), username=_e(username)
        )
    return _template("login.html").substitute(
        return_to=_e(return_to), message=notice, providers=buttons, password_form=form
    )


def sign_in_failed_page(description: str, *, retry: bool) -> str:
    """What happened to a sign-in at an identity provider (everything shown is escaped)."""
    hint = (
        "The identity provider or the gateway could not be reached; try again in a moment."
        if retry
        else "Nothing was signed in. You can start again."
    )
    return _template("sign_in_failed.html").substitute(description=_e(description), hint=hint)


def devices_page(sub: str, sessions: Sequence[Session], current_sid: str) -> str:
    rows = [
        _ROW.substitute(
            device=_e(s.device_name or "Unnamed device"),
            current=' <span class="current">this device</span>' if s.sid == current_sid else "",
            agent=_e(s.user_agent or ""),
            last_used=_e(_when(s.last_used_at)),
            ip=_e(s.ip or "unknown"),
            created=_e(_when(s.created_at)),
            sid=_e(s.sid),
        )
        for s in sessions
    ]
    if not rows:
        rows.append('      <tr><td colspan="5">No active sessions.</td></tr>')
    return _template("devices.html").substitute(sub=_e(sub), rows="\n".join(rows))


async def stylesheet_handler(_request: web.Request) -> web.Response:
    """GET /auth/browser/assets/browser.css"""
    return web.Response(
        body=stylesheet(),
        content_type="text/css",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
