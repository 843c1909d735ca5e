"""Optional OpenTelemetry span export (`tracing.otel.enabled`, `pip install
'token-gateway[otel]'`): a server span per request, a client span for its upstream call,
and spans for the Redis work of the token endpoints. Off by default; when it is off, or on
without the packages installed, nothing here runs on any request.

The tracer provider is the gateway's own (the process-global one is left alone), with a
parent-based ratio sampler: a client's sampled flag is followed, new traces are recorded
at `tracing.otel.sample_ratio`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any, Final, TypeVar, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.appkeys import EXCHANGE
from gateway.config import TracingSettings

log = logging.getLogger("gateway.telemetry")

T = TypeVar("T")
EXPORT_TIMEOUT: Final = 5.0  # seconds one OTLP export may take


class Telemetry:
    """Spans when built with a tracer; a no-op otherwise (`enabled` is False)."""

    def __init__(
        self, tracer: Any = None, provider: Any = None, *, trust_client: bool = True
    ) -> None:
        self._tracer = tracer
        self._provider = provider
        self._trust_client = trust_client  # tracing.mode restart: never continue a client's

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @classmethod
    def from_settings(cls, settings: TracingSettings, *, exporter: Any = None) -> Telemetry:
        """The exporter is OTLP/HTTP unless one is given (tests pass an in-memory one)."""
        otel = settings.otel
        if not otel.enabled:
            return cls()
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        except ImportError:
            log.warning(
                "tracing.otel.enabled is set but OpenTelemetry is not installed "
                "(pip install 'token-gateway[otel]'): no spans are exported"
            )
            return cls()
        provider = TracerProvider(
            resource=Resource.create({"service.name": otel.service_name}),
            sampler=ParentBased(TraceIdRatioBased(otel.sample_ratio)),
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # the gateway's own deadline on every export (exports run on the SDK's thread)
            exporter = OTLPSpanExporter(endpoint=otel.endpoint, timeout=EXPORT_TIMEOUT)
            provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("OpenTelemetry span export on (service %s)", otel.service_name)
        return cls(
            provider.get_tracer("gateway"), provider, trust_client=settings.mode != "restart"
        )

    def wrap_edge(self, edge: Middleware) -> Middleware:
        """The edge layer inside a server span for the request (and, once it was
        forwarded, a client span for the upstream call, from what the exchange measured)."""
        if self._tracer is None:
            return edge
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        tracer, propagator, trust = (
            self._tracer,
            TraceContextTextMapPropagator(),
            self._trust_client,
        )

        @web.middleware
        async def traced_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
            parent = propagator.extract(request.headers) if trust else None
            with tracer.start_as_current_span(
                request.method,
                context=parent,
                kind=trace.SpanKind.SERVER,
                attributes={
                    "http.request.method": request.method,
                    "url.path": request.rel_url.raw_path[:512],
                },
            ) as span:
                response = await edge(request, handler)
                ended = time.time_ns()
                exchange = request.get(EXCHANGE)
                span.set_attribute("http.response.status_code", response.status)
                if exchange is not None:
                    span.set_attribute("http.route", exchange.route)
                    span.set_attribute("gateway.request_id", exchange.request_id)
                    if exchange.upstream_status is not None:
                        upstream = tracer.start_span(
                            f"upstream {request.method}",
                            context=trace.set_span_in_context(span),
                            kind=trace.SpanKind.CLIENT,
                            start_time=ended - int(exchange.upstream_seconds * 1e9),
                            attributes={
                                "http.request.method": request.method,
                                "http.response.status_code": exchange.upstream_status,
                                "http.route": exchange.route,
                            },
                        )
                        upstream.end(end_time=ended)
                return response

        return traced_edge

    def current_span(self) -> tuple[str, str, str] | None:
        """(trace id, span id, flags) of the span the current request runs in, if any."""
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        flags = "01" if context.trace_flags.sampled else "00"
        return f"{context.trace_id:032x}", f"{context.span_id:016x}", flags

    def traced(self, target: T, component: str) -> T:
        """`target` with each coroutine method run in a client span `redis <component>.<m>`
        (the store's calls made while serving the token endpoints); itself when off."""
        if self._tracer is None:
            return target
        return cast(T, _Traced(target, self._tracer, component))

    def shutdown(self) -> None:
        """Flush what is queued and stop the exporter."""
        if self._provider is not None:
            self._provider.shutdown()


class _Traced:
    def __init__(self, target: Any, tracer: Any, component: str):
        self._target = target
        self._tracer = tracer
        self._component = component

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        from opentelemetry import trace

        tracer, span_name = self._tracer, f"redis {self._component}.{name}"

        @functools.wraps(attribute)
        async def call(*args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span(
                span_name, kind=trace.SpanKind.CLIENT, attributes={"db.system.name": "redis"}
            ):
                return await attribute(*args, **kwargs)

        return call
