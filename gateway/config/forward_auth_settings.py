"""Settings of forward-auth decisions: an ingress (nginx auth_request, Traefik ForwardAuth,
Envoy ext_authz) asks the gateway whether a request it holds may pass (SPEC §13)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import RESTART, Port, Section

ForwardAuthHeaders = Literal["gateway", "oauth2-proxy"]


class DecisionListenSettings(Section):
    host: str = "127.0.0.1"
    """address of the decision listener (only /auth/verify is served there)"""
    port: Port
    """port of the decision listener"""


class ForwardAuthSettings(Section):
    enabled: bool = False
    """serve /auth/verify and /auth/verify/{original path}: decisions for an ingress"""
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    """networks (CIDR) whose description of the original request is believed; any other
    caller of the decision endpoint gets 403"""
    headers: ForwardAuthHeaders = "gateway"
    """identity headers of an allowed decision: `gateway` (proxy.identity_headers) or
    `oauth2-proxy` (also X-Auth-Request-User, -Email, -Groups)"""
    listen: Annotated[DecisionListenSettings | None, RESTART] = None
    """the decision endpoint also on a listener of its own, with a leaner HTTP layer"""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _listen_needs_decisions(self) -> ForwardAuthSettings:
        if self.listen is not None and not self.enabled:
            raise ValueError("forward_auth.listen needs forward_auth.enabled: true")
        return self
