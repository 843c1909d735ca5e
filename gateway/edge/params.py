"""Parameters of requests to the gateway's own endpoints: a JSON object or form body, and
single text fields with bounded lengths."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qsl

from aiohttp import web

from gateway.edge.bodies import BodyReader, read_json_object
from gateway.errors import InvalidRequest

FORM: Final = "application/x-www-form-urlencoded"
MAX_FIELD: Final = {
    "username": 256,
    "password": 1024,
    "refresh_token": 512,
    "token": 8192,
    "subject_token": 16384,  # provider ID tokens with many claims stay well below
}
MAX_FIELDS: Final = 64  # parameters in one form


async def read_params(reader: BodyReader, request: web.Request) -> dict[str, Any]:
    """JSON object or form body as a dict; 400 invalid_request for anything else (the body
    is read under the gateway's size limit and deadlines: gateway.edge.bodies)."""
    if request.content_type == "application/json":
        return await read_json_object(reader, request)
    if request.content_type == FORM:
        return form_params(await reader.own_body(request))
    if not request.body_exists:
        return {}
    raise InvalidRequest("use application/json or application/x-www-form-urlencoded")


def form_params(body: bytes) -> dict[str, str]:
    """An urlencoded form as a dict; a repeated parameter is refused (RFC 6749 §3.1)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:  # not UTF-8, or too many fields
        raise InvalidRequest("the form cannot be read") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest(f"parameter {name!r} repeated")
        params[name] = value
    return params


def text_param(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    if len(value) > MAX_FIELD.get(name, 128) or not value.isprintable():
        raise InvalidRequest(f"{name} is too long or contains control characters")
    return value
