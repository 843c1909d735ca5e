"""Reading requests to the gateway's own endpoints: body parameters and the caller's token."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from gateway.appkeys import AUTHENTICATOR
from gateway.errors import AuthenticationRequired, InvalidRequest
from gateway.proxy.bearer import bearer_token
from gateway.tokens.verifier import Principal

FORM: Final = "application/x-www-form-urlencoded"
MAX_FIELD: Final = {
    "username": 256,
    "password": 1024,
    "refresh_token": 512,
    "token": 8192,
    "subject_token": 16384,  # provider ID tokens with many claims stay well below
}


async def read_params(request: web.Request) -> dict[str, Any]:
    """JSON object or form body as a dict; 400 invalid_request for anything else."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise InvalidRequest("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data
    if request.content_type == FORM:
        form = await request.post()
        params: dict[str, Any] = {}
        for name in form:
            values = form.getall(name)
            if len(values) > 1:  # RFC 6749 §3.1: parameters must not repeat
                raise InvalidRequest(f"parameter {name!r} repeated")
            params[name] = values[0]
        return params
    if not request.body_exists:
        return {}
    raise InvalidRequest("use application/json or application/x-www-form-urlencoded")


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


def optional_principal(request: web.Request) -> Principal | None:
    """The caller's verified, unrevoked Principal when it sent a bearer token, else None."""
    authenticator = request.app[AUTHENTICATOR]
    presented = bearer_token(request.headers)
    return None if presented is None else authenticator.principal_for(presented)


def required_principal(request: web.Request) -> Principal:
    """The caller's Principal; 401 without a bearer token."""
    principal = optional_principal(request)
    if principal is None:
        raise AuthenticationRequired()
    return principal
