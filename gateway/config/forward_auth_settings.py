"""Settings of forward-auth decisions: an ingress (nginx auth_request, Traefik ForwardAuth,
Envoy ext_authz) asks the gateway whether a request it holds may pass (SPEC §13)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from gateway.config.fields import Section

ForwardAuthHeaders = Literal["gateway", "oauth2-proxy"]


class ForwardAuthSettings(Section):
    enabled: bool = False
    """serve /auth/verify and /auth/verify/{original path}: decisions for an ingress"""
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    """networks (CIDR) whose description of the original request is believed; any other
    caller of the decision endpoint gets 403"""
    headers: ForwardAuthHeaders = "gateway"
    """identity headers of an allowed decision: `gateway` (proxy.identity_headers) or
    `oauth2-proxy` (also X-Auth-Request-User, -Email, -Groups)"""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value
