"""Fetching a JSON document the gateway relies on (an identity provider's discovery
document or JWKS), or posting a form that is answered with one (a provider's token
endpoint): the gateway's own deadline over the whole exchange, a size cap read
incrementally, no redirects, no cookies.

The one boundary where aiohttp's client errors meet these fetches: every failure leaves as
`FetchFailed` with a short reason for logs and metrics (`timeout`, `redirect`, `http_500`,
`too_large`, `not_json`, `unreachable`), its cause kept.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp

from gateway.safejson import parse_json

CHUNK: Final = 16 * 1024
# What aiohttp's client and the socket below it raise; a bad body is ValueError.
FETCH_ERRORS: Final = (aiohttp.ClientError, OSError, ValueError)
_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.I)
_NO_CACHE: Final = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$|=)", re.I)


class FetchFailed(Exception):
    """A document could not be had; `reason` is short and safe to log and count."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@contextmanager
def _as_fetch_failures() -> Iterator[None]:
    """aiohttp's and the socket's errors, and the deadline, as FetchFailed (cause kept)."""
    try:
        yield
    except FetchFailed:
        raise
    except TimeoutError as exc:
        raise FetchFailed("timeout") from exc
    except FETCH_ERRORS as exc:
        raise FetchFailed("unreachable") from exc


@dataclass(frozen=True, slots=True)
class Fetched:
    document: dict[str, Any]
    max_age: float | None  # Cache-Control max-age; 0 for no-cache/no-store; None if absent


async def fetch_json(
    session: aiohttp.ClientSession, url: str, *, timeout: float, max_size: int
) -> Fetched:
    """GET `url` and parse a JSON object, within `timeout` seconds in all and `max_size`
    bytes; anything else raises FetchFailed."""
    with _as_fetch_failures():
        async with asyncio.timeout(timeout):
            body, cache_control = await _get(session, url, timeout=timeout, max_size=max_size)
    try:
        document = parse_json(body)
    except ValueError as exc:  # also bad UTF-8
        raise FetchFailed("not_json") from exc
    if not isinstance(document, dict):
        raise FetchFailed("not_json")
    return Fetched(document, cache_max_age(cache_control))


async def _get(
    session: aiohttp.ClientSession, url: str, *, timeout: float, max_size: int
) -> tuple[bytes, str | None]:
    # SECURITY: redirects are never followed: only the configured (or discovered) URL is a
    # source of keys, and a redirect could point the gateway at an internal address.
    async with session.get(
        url,
        allow_redirects=False,
        headers={"Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        if 300 <= response.status < 400:
            raise FetchFailed("redirect")
        if response.status != 200:
            raise FetchFailed(f"http_{response.status}")
        if response.content_length is not None and response.content_length > max_size:
            raise FetchFailed("too_large")
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > max_size:  # stop reading: a huge document costs us nothing more
                raise FetchFailed("too_large")
        return bytes(body), response.headers.get("Cache-Control")


@dataclass(frozen=True, slots=True)
class Posted:
    status: int
    document: dict[str, Any] | None  # None when the answer is not a JSON object


async def post_form(
    session: aiohttp.ClientSession,
    url: str,
    form: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
    timeout: float,
    max_size: int,
) -> Posted:
    """POST `form` (urlencoded) to `url` and read a JSON answer of any status, within
    `timeout` seconds in all and `max_size` bytes; FetchFailed for a redirect, an answer
    too large, a timeout or an unreachable server."""
    with _as_fetch_failures():
        async with asyncio.timeout(timeout):
            async with session.post(
                url,
                data=urlencode(form).encode("ascii"),
                allow_redirects=False,
                headers={
                    "Accept": "application/json",
                    # the shared session adds no Content-Type of its own
                    "Content-Type": "application/x-www-form-urlencoded",
                    **(headers or {}),
                },
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if 300 <= response.status < 400:
                    raise FetchFailed("redirect")
                body = await _bounded_body(response, max_size)
                status = response.status
    try:
        document = parse_json(body)
    except ValueError:
        return Posted(status, None)
    return Posted(status, document if isinstance(document, dict) else None)


async def _bounded_body(response: aiohttp.ClientResponse, max_size: int) -> bytes:
    if response.content_length is not None and response.content_length > max_size:
        raise FetchFailed("too_large")
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > max_size:  # stop reading: a huge answer costs us nothing more
            raise FetchFailed("too_large")
    return bytes(body)


def cache_max_age(value: str | None) -> float | None:
    """Seconds a response may be kept by Cache-Control: `no-cache`/`no-store` → 0,
    `max-age=N` → N, otherwise None (the caller's default applies)."""
    if not value:
        return None
    if _NO_CACHE.search(value):
        return 0.0
    match = _MAX_AGE.search(value)
    return float(match.group(1)) if match else None
