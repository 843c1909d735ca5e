"""Traffic for the failover drill: clients refreshing their sessions through two gateways,
logins, and revocations an operator and users make; every answer is tallied.

A client keeps the newest refresh token whose refresh it saw succeed; after a 503 (or no
answer) it retries the same token, as a client following the protocol does. Revocations are
retried until acknowledged; only acknowledged ones are checked afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

ADMIN_KEY: Final = "gwadm_failover-drill-key"
PASSWORD: Final = "drill-password"
KINDS: Final = ("session", "token", "logout", "user")  # how each revocation is made, in turn


@dataclass(frozen=True)
class Instance:
    """One gateway as a client reaches it."""

    name: str
    base: str  # public listener
    admin: str  # admin listener


@dataclass
class Tally:
    """Every answer the drill's clients got, and when."""

    started: float = field(default_factory=time.monotonic)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unavailable: list[float] = field(default_factory=list)  # when each 503 came
    missing_retry_after: int = 0
    past_deadline: int = 0  # no answer within the client's deadline
    unreachable: int = 0  # the gateway itself refused the connection
    slowest: float = 0.0
    faults: list[str] = field(default_factory=list)  # the 5xx other than 503, as answered

    def record(self, what: str, status: int, seconds: float, headers: Any, body: Any) -> None:
        now = time.monotonic()
        self.statuses[(what, status)] += 1
        if status >= 500 and status != 503:
            self.faults.append(f"{what} {status} {body}")
        self.slowest = max(self.slowest, seconds)
        if status == 503:
            self.unavailable.append(now)
            if not headers.get("Retry-After"):
                self.missing_retry_after += 1

    @property
    def other_5xx(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500 and status != 503)

    def count(self, predicate: Callable[[str, int], bool]) -> int:
        return sum(n for (what, status), n in self.statuses.items() if predicate(what, status))


@dataclass
class Chain:
    """One client's session: the newest refresh token it saw a refresh succeed with."""

    user: str
    sid: str = ""
    token: str = ""
    access: str = ""
    refreshes: int = 0
    lost: bool = False  # a refresh was refused (400): the session is gone


@dataclass(frozen=True)
class Revoked:
    """An acknowledged revocation and the credentials it must have killed."""

    kind: str
    access: str
    refresh: str | None  # None: only the access token was revoked
    at: float  # monotonic time of the acknowledgement


class Traffic:
    """The drill's clients over one aiohttp session, alternating between the instances."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        instances: list[Instance],
        *,
        deadline: float,
        pause: float,
        tally: Tally,
    ):
        self._http = http
        self._instances = instances
        self.deadline = deadline
        self._pause = pause
        self.tally = tally
        self._turn = itertools.count()
        self.revoked: list[Revoked] = []
        self.revocations_refused = 0  # never acknowledged before the traffic stopped

    def _next(self) -> Instance:
        return self._instances[next(self._turn) % len(self._instances)]

    async def call(
        self, what: str, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body or {}); status 0 when no answer came within the deadline."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline):
                async with self._http.request(method, url, **kwargs) as resp:
                    body = await resp.json() if resp.content_type == "application/json" else {}
                    seconds = time.monotonic() - started
                    self.tally.record(what, resp.status, seconds, resp.headers, body)
                    return resp.status, body if isinstance(body, dict) else {}
        except TimeoutError:
            self.tally.past_deadline += 1
        except aiohttp.ClientError:
            self.tally.unreachable += 1
        return 0, {}

    async def login(self, user: str, stop: asyncio.Event, device: str) -> dict[str, Any] | None:
        """A token response for `user`, retrying 503s until it comes or the traffic stops."""
        while not stop.is_set():
            gateway = self._next()
            payload = {"username": user, "password": PASSWORD, "device_id": device}
            url = f"{gateway.base}/auth/login"
            status, body = await self.call("login", "POST", url, json=payload)
            if status == 200:
                return body
            await asyncio.sleep(self._pause)
        return None

    async def refresh(self, chain: Chain, gateway: Instance) -> int:
        """One refresh of the chain's token; the chain moves on only when the client sees 200."""
        status, body = await self.call(
            "refresh", "POST", f"{gateway.base}/auth/refresh", json={"refresh_token": chain.token}
        )
        if status == 200:
            chain.token, chain.access = body["refresh_token"], body["access_token"]
            chain.refreshes += 1
        elif status == 400:
            chain.lost = True
        return status

    async def run_chain(self, chain: Chain, stop: asyncio.Event) -> None:
        """Refresh in a loop, calling a protected route with each access token."""
        body = await self.login(chain.user, stop, device="drill")
        if body is None:
            return
        chain.sid, chain.token = body["session_id"], body["refresh_token"]
        chain.access = body["access_token"]
        while not stop.is_set() and not chain.lost:
            gateway = self._next()
            if await self.refresh(chain, gateway) != 200:
                await asyncio.sleep(self._pause)
                continue
            headers = {"Authorization": f"Bearer {chain.access}"}
            await self.call("api", "GET", f"{gateway.base}/api/drill", headers=headers)

    async def run_logins(self, user: str, stop: asyncio.Event) -> None:
        for n in itertools.count():
            if stop.is_set() or await self.login(user, stop, device=f"d{n % 4}") is None:
                return

    async def run_revocations(self, victims: list[str], stop: asyncio.Event) -> None:
        """Log each victim in, then revoke that session in the next way of KINDS."""
        for victim, kind in zip(victims, itertools.cycle(KINDS), strict=False):
            body = await self.login(victim, stop, device="victim")
            if body is None:
                return
            attempts = 0
            while True:
                if stop.is_set():
                    self.revocations_refused += 1
                    return
                status = await self._revoke(kind, victim, body)
                attempts += 1
                # 404 for a session an earlier (unanswered) attempt ended: the gateway ends a
                # session only after its revocation is written, so it is done.
                if status in (200, 204) or (kind == "session" and status == 404 and attempts > 1):
                    refresh = None if kind == "token" else body["refresh_token"]
                    self.revoked.append(
                        Revoked(kind, body["access_token"], refresh, time.monotonic())
                    )
                    break
                await asyncio.sleep(self._pause)

    async def _revoke(self, kind: str, victim: str, body: dict[str, Any]) -> int:
        gateway = self._next()
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        if kind == "session":
            url = f"{gateway.admin}/admin/sessions/{body['session_id']}"
            status, _ = await self.call("revoke", "DELETE", url, headers=admin)
        elif kind == "token":
            url = f"{gateway.admin}/admin/revoke/token"
            payload = {"token": body["access_token"]}
            status, _ = await self.call("revoke", "POST", url, json=payload, headers=admin)
        elif kind == "logout":
            payload = {"refresh_token": body["refresh_token"]}
            url = f"{gateway.base}/auth/logout"
            status, _ = await self.call("revoke", "POST", url, json=payload)
        else:
            url = f"{gateway.admin}/admin/users/{victim}/revoke"
            status, _ = await self.call("revoke", "POST", url, headers=admin)
        return status
