"""Request bodies, read with the gateway's deadlines, and the gateway's own small bodies.

* A body that stalls longer than `proxy.body_timeout` between two reads, or that averages
  less than `proxy.min_body_rate` bytes/s over the time the gateway spent waiting for it
  (once that passes body_timeout), is a 408: never a 5xx, and never a connection held by a
  client that trickles a byte at a time.
* `Expect: 100-continue` is answered only when the request is about to be read, i.e. once it
  has been authorized and its declared size accepted: a refused request gets its final 4xx
  without a 100 Continue first (aiohttp's router would send it before any check).
* The gateway's own endpoints take bodies of at most OWN_BODY_LIMIT: a larger declared
  Content-Length is refused before anything is read, a chunked body is cut at the limit, and
  JSON is parsed with a bounded nesting depth (gateway.safejson).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import HttpVersion11, web
from aiohttp.web_protocol import RequestPayloadError

from gateway.config import ProxySettings
from gateway.errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from gateway.safejson import parse_json

OWN_BODY_LIMIT: Final = 64 * 1024  # bytes: login forms, refresh and admin JSON
CHUNK: Final = 64 * 1024
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class BodyReader:
    """Reads request bodies under the configured deadlines."""

    stall_timeout: float
    min_rate: int

    @classmethod
    def from_settings(cls, settings: ProxySettings) -> BodyReader:
        return cls(stall_timeout=settings.body_timeout, min_rate=settings.min_body_rate)

    async def chunks(self, request: web.BaseRequest, *, max_size: int = 0) -> AsyncIterator[bytes]:
        """The body as it arrives; 413 past `max_size` (0 = no limit), 408 when it stalls or
        trickles, 400 when the client's framing breaks or it goes away mid-body."""
        await send_continue(request)
        content = request.content
        loop = asyncio.get_running_loop()
        received = 0
        waited = 0.0  # seconds spent waiting on the client (not on the upstream's pace)
        try:
            while True:
                chunk = content.read_nowait(CHUNK)
                if not chunk:
                    if content.at_eof():
                        return
                    started = loop.time()
                    try:
                        async with asyncio.timeout(self.stall_timeout):
                            chunk = await content.readany()
                    except TimeoutError:
                        raise RequestTimeout("the request body stalled") from None
                    waited += loop.time() - started
                    if not chunk:
                        return
                received += len(chunk)
                if max_size and received > max_size:
                    raise PayloadTooLarge()
                if self._too_slow(received, waited):
                    raise RequestTimeout("the request body arrives too slowly")
                yield chunk
        except (ConnectionError, RequestPayloadError):
            raise InvalidRequest("the request body is incomplete or malformed") from None

    def _too_slow(self, received: int, waited: float) -> bool:
        """Below the minimum average rate, judged once the wait exceeds the stall timeout."""
        return (
            bool(self.min_rate)
            and waited > self.stall_timeout
            and (received < self.min_rate * waited)
        )

    async def own_body(self, request: web.BaseRequest) -> bytes:
        """The whole (small) body of a request to the gateway's own endpoints."""
        declared = request.content_length
        if declared is not None and declared > OWN_BODY_LIMIT:
            raise PayloadTooLarge()  # before a byte is read or a 100 Continue is sent
        if not request.body_exists:
            return b""
        parts = [chunk async for chunk in self.chunks(request, max_size=OWN_BODY_LIMIT)]
        return b"".join(parts)


async def send_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` now (the request is accepted so far)."""
    if request.version == HttpVersion11 and "Expect" in request.headers:
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # an interim answer: the response has not started


async def defer_expectation(_request: web.Request) -> None:
    """The routes' expect handler: do nothing yet (aiohttp's default sends 100 Continue
    before any check); the body reader answers it once the request is accepted."""


async def read_json_object(reader: BodyReader, request: web.BaseRequest) -> dict[str, Any]:
    """An own endpoint's JSON object body; 400 for anything else."""
    try:
        data = parse_json(await reader.own_body(request))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data
