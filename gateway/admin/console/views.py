"""The console's pages and actions. Reads go through AdminActions and the revocation view;
every change is an AdminActions call (audited before it returns, as on the admin API),
reached only through a confirmation page and a CSRF-checked POST."""

from __future__ import annotations

import logging
import math
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from gateway.admin.actions import Actor, AdminActions, check_sub
from gateway.admin.console.audit_trail import AUDIT_ACTIONS, AuditFilter, filtered_audit
from gateway.admin.console.pages import BASE_PATH, Pages, see_other
from gateway.admin.console.status import StatusPanel
from gateway.appkeys import CONSOLE_FORM, CONSOLE_SESSION
from gateway.authserver.client_registry import ClientRegistry
from gateway.errors import InvalidRequest, NotFound
from gateway.store import SID_RE
from gateway.tokens.revocation_view import RevocationView
from gateway.typedefs import Clock

log = logging.getLogger("gateway.admin")

REVOCATIONS_SHOWN: Final = 500
MAX_FIELD: Final = 8192  # a pasted token, a sub


class ConsoleViews:
    """Every signed-in page of the console; the guard has checked the session (and the CSRF
    token of every POST) before these run."""

    def __init__(
        self,
        *,
        actions: AdminActions,
        view: RevocationView,
        status: StatusPanel,
        pages: Pages,
        clock: Clock,
        clients: ClientRegistry | None = None,
    ):
        self._clients = clients or ClientRegistry()
        self._actions = actions
        self._view = view
        self._status = status
        self._pages = pages
        self._clock = clock

    # ---- reads ---------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        """GET /admin/console/: the status panel."""
        status = await self._status.read()
        return self._render(request, "status.html", "Status", status=status)

    async def user(self, request: web.Request) -> web.Response:
        """GET users?sub=…: the user's sessions, each with its revoke button."""
        sub = request.query.get("sub", "").strip()
        sessions = None
        if sub:
            check_sub(sub)
            sessions = await self._actions.sessions_of(sub)
            sessions.sort(key=lambda s: s.last_used_at, reverse=True)
        return self._render(
            request,
            "user.html",
            f"Sessions of {sub}" if sub else "Find a user",
            sub=sub,
            sessions=sessions,
            notice=_notice(request),
        )

    async def clients(self, request: web.Request) -> web.Response:
        """GET clients: the registered clients, each with its revoke button."""
        return self._render(
            request,
            "clients.html",
            "Clients",
            clients=sorted(self._clients, key=lambda c: c.id),
            notice=_notice(request),
        )

    async def confirm_revoke_client(self, request: web.Request) -> web.Response:
        """GET clients/revoke?id=…: what revoking the client's tokens does."""
        client_id = request.query.get("id", "")
        if self._clients.get(client_id) is None:
            raise NotFound("no such client")
        return self._render(
            request, "client_confirm.html", "Revoke this client's tokens?", client_id=client_id
        )

    async def revoke_client(self, request: web.Request) -> web.Response:
        form = request[CONSOLE_FORM]
        client_id = _field(form, "client_id")
        if self._clients.get(client_id) is None:
            raise NotFound("no such client")
        await self._actions.revoke_client(_actor(request), client_id)
        _log(request, "revoke_client", client_id)
        return see_other(
            f"{BASE_PATH}clients?{urlencode({'notice': 'client-revoked', 'id': client_id})}"
        )

    async def revocations(self, request: web.Request) -> web.Response:
        """GET revocations: this instance's revocation view."""
        rows = self._view.entries(REVOCATIONS_SHOWN)
        return self._render(
            request,
            "revocations.html",
            "Revocations",
            rows=rows,
            total=len(self._view),
            shown=REVOCATIONS_SHOWN,
        )

    async def audit(self, request: web.Request) -> web.Response:
        """GET audit?key=&action=&target=&before=: newest first, filtered."""
        filters = AuditFilter.from_query(request.query)
        before = request.query.get("before") or None
        entries, older = await filtered_audit(self._actions, filters, before)
        older_link = None
        if older is not None:
            older_link = "audit?" + urlencode({**filters.as_query(), "before": older})
        return self._render(
            request,
            "audit.html",
            "Audit trail",
            entries=entries,
            filters=filters,
            actions=AUDIT_ACTIONS,
            older=older_link,
            paged=before is not None,
        )

    async def token_form(self, request: web.Request) -> web.Response:
        """GET token: paste an access token to revoke."""
        return self._render(request, "token.html", "Revoke a token", notice=_notice(request))

    async def inspect_token(self, request: web.Request) -> web.Response:
        """POST token/inspect: who the pasted token speaks for, before confirming."""
        form = request[CONSOLE_FORM]
        token = _field(form, "token").strip()
        if not token:
            raise InvalidRequest("paste an access token")
        principal = self._actions.inspect_token(token)
        now = self._clock()
        return self._render(
            request,
            "token_confirm.html",
            "Revoke this token?",
            principal=principal,
            expired=principal.exp <= now,
            expires_in=principal.exp - now,
        )

    # ---- confirmations -------------------------------------------------------------------

    async def confirm_revoke_session(self, request: web.Request) -> web.Response:
        """GET sessions/revoke?sid=…: what revoking this session does."""
        sid = request.query.get("sid", "")
        session = await self._actions.revoker.get_session(sid) if SID_RE.match(sid) else None
        if session is None:
            raise NotFound("no such session (it may have ended already)")
        return self._render(request, "session_confirm.html", "Revoke this session?", s=session)

    async def confirm_revoke_user(self, request: web.Request) -> web.Response:
        """GET users/revoke?sub=…: what revoking everything of the user does."""
        sub = request.query.get("sub", "")
        check_sub(sub)
        sessions = await self._actions.sessions_of(sub)
        return self._render(
            request, "user_confirm.html", f"Revoke everything of {sub}?", sub=sub, sessions=sessions
        )

    # ---- actions (POST, CSRF-checked by the guard) ---------------------------------------

    async def revoke_session(self, request: web.Request) -> web.Response:
        form = request[CONSOLE_FORM]
        sid, sub = _field(form, "sid"), _field(form, "sub")
        if not SID_RE.match(sid):
            raise InvalidRequest("invalid session id")
        result = await self._actions.revoke_session(_actor(request), sid)
        _log(request, "revoke_session", sid)
        back = {"sub": sub or result["sub"], "notice": "session-revoked", "id": sid}
        return see_other(f"{BASE_PATH}users?{urlencode(back)}")

    async def revoke_user(self, request: web.Request) -> web.Response:
        form = request[CONSOLE_FORM]
        sub = _field(form, "sub")
        check_sub(sub)
        result = await self._actions.revoke_user(_actor(request), sub)
        _log(request, "revoke_user", sub)
        back = {
            "sub": sub,
            "notice": "user-revoked",
            "id": sub,
            "n": str(result["sessions_revoked"]),
        }
        return see_other(f"{BASE_PATH}users?{urlencode(back)}")

    async def revoke_token(self, request: web.Request) -> web.Response:
        form = request[CONSOLE_FORM]
        jti = _field(form, "jti")
        try:
            exp = float(_field(form, "exp"))
        except ValueError:
            raise InvalidRequest("exp must be a Unix time in seconds") from None
        if not math.isfinite(exp):
            raise InvalidRequest("exp must be a Unix time in seconds")
        result = await self._actions.revoke_token(_actor(request), jti=jti, exp=exp)
        _log(request, "revoke_token", jti)
        notice = "token-revoked" if result["revoked"] else "token-expired"
        return see_other(f"{BASE_PATH}token?{urlencode({'notice': notice, 'id': jti})}")

    def _render(
        self, request: web.Request, template: str, title: str, **context: Any
    ) -> web.Response:
        session = request[CONSOLE_SESSION]
        return self._pages.render(
            template,
            {
                "title": title,
                "session": session,
                "csrf": session.csrf,
                "now": self._clock(),
                "path": request.path,
                **context,
            },
        )


NOTICES: Final = {
    "session-revoked": "Session {id} revoked: its refresh token and access tokens are dead.",
    "user-revoked": "Everything of {id} revoked ({n} sessions ended); logging in again works.",
    "token-revoked": "Access token {id} revoked until it expires.",
    "token-expired": "Access token {id} had already expired: nothing to revoke.",
    "client-revoked": "Every token of client {id} issued before now is revoked.",
}


def _notice(request: web.Request) -> str | None:
    """A fixed message for the action just done (its values escaped when rendered)."""
    template = NOTICES.get(request.query.get("notice", ""))
    if template is None:
        return None
    return template.format(id=request.query.get("id", "")[:256], n=request.query.get("n", "?")[:8])


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidRequest(f"invalid form field {name}")
    return value


def _actor(request: web.Request) -> Actor:
    """The audit trail's actor: the admin key's id, exactly as on the admin API."""
    return Actor(f"admin-key:{request[CONSOLE_SESSION].key_id}", request.remote)


def _log(request: web.Request, action: str, target: str) -> None:
    session = request[CONSOLE_SESSION]
    log.info(
        "admin action %s target=%s by key %s (console session %s)",
        action,
        target,
        session.key_id,
        session.handle,
    )
