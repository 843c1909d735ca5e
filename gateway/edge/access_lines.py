"""The access line of one request, as text or as one JSON object.

Lines carry ids (request id, trace id, sub, sid, jti) and how the request authenticated
(`auth`: bearer or cookie), never a token, password, cookie value or key; the query string is
never logged (clients put tokens there).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final

from gateway.edge.record import Exchange
from gateway.edge.request_view import RequestView
from gateway.errors import InsufficientScope, InvalidToken, PolicyDenied
from gateway.observability.logs import log_value
from gateway.observability.tracecontext import incoming_trace_id

if TYPE_CHECKING:
    from gateway.tokens.verifier import Principal


def _json_string(value: str | None) -> str:
    """A JSON string literal; the common plain-ASCII case without json.dumps."""
    if value is None:
        return "null"
    if _PLAIN_JSON_STRING(value):
        return f'"{value}"'
    return json.dumps(value)


# Printable ASCII but `"` and `\`: such a string is its own JSON literal between quotes.
_PLAIN_JSON_STRING: Final = re.compile(r"[ !#-\[\]-~]*").fullmatch


def json_line(request: RequestView, exchange: Exchange, status: int, seconds: float) -> str:
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
    if exchange.original_path is not None:  # a forward-auth decision: what it decided on
        parts += (
            ',"original_method":',
            _json_string(exchange.original_method),
            ',"original_path":',
            _json_string(exchange.original_path[:512]),
        )
    principal = exchange.principal
    if principal is not None:
        parts.append(_principal_fields(principal))
    if principal is not None or exchange.auth_method is not None:
        parts += (',"auth":"', exchange.auth_method or "bearer", '"')  # bearer or cookie
    error = exchange.error
    if error is not None:
        parts += (',"error":', _json_string(error.code))
        if isinstance(error, InvalidToken | InsufficientScope):
            parts += (',"reason":', _json_string(error.reason))
        elif isinstance(error, PolicyDenied):  # the deciding rule's place, never its values
            parts += (
                ',"reason":',
                _json_string(error.reason),
                ',"rule":',
                _json_string(error.rule),
            )
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


def text_line(request: RequestView, exchange: Exchange, status: int, seconds: float) -> str:
    """The access line as text: `remote method path status duration`, then `key=value`
    fields; values from outside (the path, sub, sid) are quoted when they are not one plain
    token, so they can never end the line or add a field (`log_value`)."""
    path = log_value(request.rel_url.raw_path[:512])
    parts = [f"{request.remote} {request.method} {path} {status} {seconds * 1000:.3f}ms"]
    if exchange.original_path is not None:  # a forward-auth decision: what it decided on
        method = log_value(exchange.original_method or "")
        parts.append(f"original={method} {log_value(exchange.original_path[:512])}")
    if exchange.upstream_status is not None:
        upstream_ms = exchange.upstream_seconds * 1000
        parts.append(f"upstream={exchange.upstream_status} {upstream_ms:.3f}ms")
    if exchange.principal is not None:
        principal = exchange.principal
        parts.append(f"sub={log_value(principal.sub)} sid={log_value(principal.sid)}")
    if exchange.principal is not None or exchange.auth_method is not None:
        parts.append(f"auth={exchange.auth_method or 'bearer'}")
    error = exchange.error
    if error is not None:
        reason = ""
        if isinstance(error, InvalidToken | InsufficientScope):
            reason = f"/{error.reason}"
        elif isinstance(error, PolicyDenied):
            reason = f"/{error.reason} rule={error.rule}"
        parts.append(f"error={error.code}{reason}")
    parts.append(f"id={exchange.request_id}")
    trace_id = exchange.trace_id or incoming_trace_id(request.headers)
    if trace_id is not None:
        parts.append(f"trace={trace_id}")
    return " ".join(parts)
