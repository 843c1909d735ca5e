"""Settings of the listeners (public, admin, console), logs and tracing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.config.fields import RESTART, Port, PositiveSeconds, RateLimit, Section


class ListenSettings(Section):
    host: str = "127.0.0.1"
    """address of the public listener (0.0.0.0 in containers)"""
    port: Port = 8080
    """port of the public listener: proxied routes, /auth/*, /.well-known/*, health, metrics"""
    workers: int = Field(
        default=0,
        ge=0,
        description="processes sharing the port (SO_REUSEPORT); 0 = one per usable CPU "
        "(1 with memory://); `gateway serve --workers N` overrides",
    )


class AdminKeySettings(Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    """name of the key, recorded in the audit trail"""
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the key")


class ConsoleSettings(Section):
    enabled: bool = True
    """serve the web console at /admin/console/ on the admin listener"""
    session_ttl: PositiveSeconds = Field(
        default=900, le=86400, description="seconds a console sign-in lasts (never extended)"
    )
    cookie_secure: bool = Field(
        default=False,
        description="mark the console cookie Secure on plain HTTP too (TLS terminated in "
        "front of the admin listener); over HTTPS it always is",
    )


class AdminSettings(Section):
    host: Annotated[str, RESTART] = "127.0.0.1"
    """address of the admin listener; keep it off public networks"""
    port: Annotated[Port, RESTART] = 8081
    """port of the admin listener (/admin/*)"""
    keys: list[AdminKeySettings] = Field(default_factory=list)
    """admin API keys, as hashes (`gateway admin-key create`); empty = every admin call refused"""
    key_failures_per_ip: RateLimit = RateLimit(limit=10, window=300)
    """wrong admin keys per client address (admin API and console sign-in, counted in Redis);
    past it every attempt from the address is 429 until the window ends, a right key too"""
    block_public_path: bool = Field(
        default=True, description="answer 404 for /admin/* on the public listener"
    )
    console: ConsoleSettings = ConsoleSettings()
    """the web console: sign-in with an admin key, sessions, revocations, audit trail"""


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """DEBUG, INFO, WARNING or ERROR"""
    format: Literal["json", "text"] = Field(
        default="json", description="access and event logs: one JSON object per line, or text"
    )
    access_log: bool = True
    """one line per request"""


class OpenTelemetrySettings(Section):
    enabled: bool = False
    """export spans (request, upstream call, token endpoints' Redis work); needs the `otel` extra"""
    service_name: str = "token-gateway"
    """`service.name` of the exported spans"""
    endpoint: str | None = None
    """OTLP/HTTP traces URL; else the exporter's OTEL_EXPORTER_OTLP_* environment variables"""
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """share of new traces recorded (a client's sampled flag is followed)"""


class TracingSettings(Section):
    mode: Literal["passthrough", "participate", "restart"] = Field(
        default="passthrough",
        description="passthrough: traceparent/tracestate reach the upstream unchanged; "
        "participate: same trace id, the gateway's own parent id (invalid → new trace); "
        "restart: a new trace for every request (clients are not trusted)",
    )
    otel: OpenTelemetrySettings = OpenTelemetrySettings()
    """OpenTelemetry span export (off by default)"""
