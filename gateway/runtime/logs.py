"""Logs: the one-line-per-request access log (batched), JSON event lines, and their setup.

Lines carry ids (request id, trace id, sub, sid, jti) and how the request authenticated
(`auth`: bearer or cookie), never a token, password, cookie value or key; the query string is
never logged (clients put tokens there).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from typing import Final

from aiohttp import web

from gateway.edge import Exchange
from gateway.errors import InvalidToken
from gateway.proxy.tracecontext import incoming_trace_id
from gateway.tokens.verifier import Principal

access_log = logging.getLogger("gateway.access")
FLUSH_INTERVAL: Final = 0.2  # seconds an access line may wait in memory
FLUSH_BYTES: Final = 64 * 1024


def _json_string(value: str | None) -> str:
    """A JSON string literal; the common plain-ASCII case without json.dumps."""
    if value is None:
        return "null"
    if _PLAIN_JSON_STRING(value):
        return f'"{value}"'
    return json.dumps(value)


# Printable ASCII but `"` and `\`: such a string is its own JSON literal between quotes.
_PLAIN_JSON_STRING: Final = re.compile(r"[ !#-\[\]-~]*").fullmatch


def json_line(request: web.Request, exchange: Exchange, status: int, seconds: float) -> str:
    """The access line as one JSON object, assembled directly (it is written per request)."""
    # request_id (validated or made), remote (an address) and method (llhttp admits known
    # methods only) never need escaping; the path, route and claims may.
    trace_id = exchange.trace_id or incoming_trace_id(request.headers)
    parts = [
        '{"request_id":"',
        exchange.request_id,
        '"',
        ',"trace_id":"' + trace_id + '"' if trace_id is not None else "",  # 32 hex digits
        ',"remote":',
        _json_string(request.remote),
        ',"method":"',
        request.method,
        '","path":',
        _json_string(request.rel_url.raw_path[:512]),
        ',"route":',
        _json_string(exchange.route),
        f',"status":{status},"duration_ms":{seconds * 1000:.3f}',
    ]
    if exchange.upstream_status is not None:
        parts.append(
            f',"upstream_status":{exchange.upstream_status}'
            f',"upstream_ms":{exchange.upstream_seconds * 1000:.3f}'
            f',"bytes_in":{exchange.bytes_in},"bytes_out":{exchange.bytes_out}'
        )
    principal = exchange.principal
    if principal is not None:
        parts.append(_principal_fields(principal))
    if principal is not None or exchange.auth_method is not None:
        parts += (',"auth":"', exchange.auth_method or "bearer", '"')  # bearer or cookie
    error = exchange.error
    if error is not None:
        parts += (',"error":', _json_string(error.code))
        if isinstance(error, InvalidToken):
            parts += (',"reason":', _json_string(error.reason))
    parts.append("}")
    return "".join(parts)


_PRINCIPAL_FIELDS: Final = "access-log fields"  # the key of the fragment kept on a Principal


def _principal_fields(principal: Principal) -> str:
    """`,"sub":…,"sid":…,"jti":…`, kept on the Principal like its identity headers: a cached
    token's principal renders them once, not on every request."""
    fields: str | None = principal.derived.get(_PRINCIPAL_FIELDS)
    if fields is None:
        fields = principal.derived[_PRINCIPAL_FIELDS] = (
            f',"sub":{_json_string(principal.sub)},"sid":{_json_string(principal.sid)}'
            f',"jti":{_json_string(principal.jti)}'
        )
    return fields


def text_line(request: web.Request, exchange: Exchange, status: int, seconds: float) -> str:
    parts = [
        f"{request.remote} {request.method} {request.rel_url.raw_path[:512]} {status} "
        f"{seconds * 1000:.3f}ms"
    ]
    if exchange.upstream_status is not None:
        upstream_ms = exchange.upstream_seconds * 1000
        parts.append(f"upstream={exchange.upstream_status} {upstream_ms:.3f}ms")
    if exchange.principal is not None:
        parts.append(f"sub={exchange.principal.sub} sid={exchange.principal.sid}")
    if exchange.principal is not None or exchange.auth_method is not None:
        parts.append(f"auth={exchange.auth_method or 'bearer'}")
    error = exchange.error
    if error is not None:
        reason = f"/{error.reason}" if isinstance(error, InvalidToken) else ""
        parts.append(f"error={error.code}{reason}")
    parts.append(f"id={exchange.request_id}")
    trace_id = exchange.trace_id or incoming_trace_id(request.headers)
    if trace_id is not None:
        parts.append(f"trace={trace_id}")
    return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access lines are JSON already and pass through."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == access_log.name:
            return record.getMessage()
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes access lines in batches: at most every FLUSH_INTERVAL seconds or FLUSH_BYTES,
    instead of one write system call per request. Flushed on exit (logging.shutdown)."""

    def __init__(self) -> None:
        super().__init__()
        # The event loop appends, the flusher pops: a deque needs no lock for that.
        self._pending: deque[str] = deque()
        self._size = 0  # approximate (updated without a lock): it only decides when to flush
        self._stop = threading.Event()
        threading.Thread(target=self._flush_periodically, name="access-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add_line(line)

    def add_line(self, line: str) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            if not pending:
                return
            self._size = 0
            lines = [pending.popleft() for _ in range(len(pending))]
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()


def configure_logging(*, level: str, json_format: bool, access: bool) -> None:
    """Root logging for `gateway serve`; library loggers stay at WARNING. Access lines go
    through a batching handler of their own (same stream, same format)."""
    formatter: logging.Formatter = (
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("gateway").setLevel(level)
    for old in access_log.handlers[:]:
        access_log.removeHandler(old)
        old.close()
    if access:
        batching = BatchingHandler()
        batching.setFormatter(formatter)
        access_log.addHandler(batching)
    access_log.propagate = False
    access_log.setLevel(logging.INFO if access else logging.WARNING)
