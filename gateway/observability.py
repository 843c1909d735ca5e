"""Metrics (Prometheus, one registry per app) and the one-line-per-request access log.

Log lines carry ids (request id, sub, sid, jti), never a token, password or key; the query
string is never logged (clients put tokens there).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.errors import GatewayError, InvalidToken, StoreUnavailable
from gateway.revocation import RevocationSync, RevocationView
from gateway.state import ERROR, EXCHANGE, PRINCIPAL, REQUEST_ID, ROUTE_NAME

access_log = logging.getLogger("gateway.access")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
MAX_LABEL_SETS: Final = 10_000
FLUSH_INTERVAL: Final = 0.2  # seconds an access line may wait in memory
FLUSH_BYTES: Final = 64 * 1024


class Metrics:
    """Every metric the gateway exports, on its own registry (no process-global state).

    Under `serve --workers N` (PROMETHEUS_MULTIPROC_DIR set by the supervisor) counters and
    histograms live in shared files and /metrics adds up every worker; the revocation view
    gauges describe the worker that answered the scrape.
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._export = r
        multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if multiproc_dir:
            self._export = CollectorRegistry()
            MultiProcessCollector(self._export, path=multiproc_dir)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "gateway_requests", "Requests served", ["route", "method", "status_class"], registry=r
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Time until the upstream's response headers arrived",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.auth_rejections = Counter(
            "gateway_auth_rejections", "Refused bearer tokens by reason", ["reason"], registry=r
        )
        self.refresh = Counter("gateway_refresh", "Refreshes by outcome", ["outcome"], registry=r)
        self.logins = Counter("gateway_logins", "Logins by outcome", ["outcome"], registry=r)
        self.redis_errors = Counter(
            "gateway_redis_errors", "Requests that failed because Redis was unavailable", registry=r
        )
        self.in_flight = Gauge(
            "gateway_in_flight_requests",
            "Requests being served",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.worker_started = Gauge(
            "gateway_worker_start_time_seconds",
            "Start time of each serving process (one series per worker pid under --workers)",
            registry=r,
            multiprocess_mode="all",
        )
        self.worker_started.set_to_current_time()
        # Children bound once: the hot path does a dict lookup, not a label resolution.
        self._request_children: dict[tuple[str, str, str], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def count_request(self, route: str, method: str, status: int) -> None:
        key = (route, method, STATUS_CLASSES[min(max(status // 100, 1), 5) - 1])
        child = self._request_children.get(key)
        if child is None:
            if len(self._request_children) >= MAX_LABEL_SETS:  # methods are client-chosen
                key = (route, "OTHER", key[2])
            child = self.requests.labels(*key)
            self._request_children[key] = child
        child.inc()

    def observe_upstream(self, route: str, seconds: float) -> None:
        child = self._latency_children.get(route)
        if child is None:  # routes come from the configuration: a bounded set
            child = self._latency_children[route] = self.upstream_latency.labels(route)
        child.observe(seconds)

    def watch_revocations(self, sync: RevocationSync, view: RevocationView) -> None:
        """Export the revocation view's state, read at scrape time (nothing on the hot path)."""
        self._export.register(RevocationCollector(sync, view))

    def render(self) -> bytes:
        return generate_latest(self._export)


class RevocationCollector(Collector):
    def __init__(self, sync: RevocationSync, view: RevocationView):
        self._sync = sync
        self._view = view

    def collect(self) -> list[Metric]:
        staleness = self._sync.staleness()
        return [
            CounterMetricFamily(
                "gateway_revocation_events",
                "Revocation messages received from Redis",
                value=self._sync.events_received,
            ),
            CounterMetricFamily(
                "gateway_revocation_reloads",
                "Full reloads of the revocation view",
                value=self._sync.reloads,
            ),
            GaugeMetricFamily(
                "gateway_revocation_staleness_seconds",
                "Seconds since the revocation view was last known current (-1: never loaded)",
                value=-1.0 if staleness == float("inf") else staleness,
            ),
            GaugeMetricFamily(
                "gateway_revocations", "Entries in the revocation view", value=len(self._view)
            ),
            GaugeMetricFamily(
                "gateway_revocation_refusing",
                "1 while protected routes are refused because the view is stale (fail closed)",
                value=1.0 if self._view.refusing else 0.0,
            ),
        ]


def observability_middleware(metrics: Metrics, *, json_logs: bool) -> Middleware:
    """Outermost: counts every request and writes one access-log line for it."""
    format_line = _json_line if json_logs else _text_line

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        metrics.in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            metrics.in_flight.dec()
            route = request.get(ROUTE_NAME, "gateway")
            metrics.count_request(route, request.method, status)
            error = request.get(ERROR)
            if isinstance(error, InvalidToken):
                metrics.auth_rejections.labels(error.reason).inc()
            elif isinstance(error, StoreUnavailable):
                metrics.redis_errors.inc()
            exchange = request.get(EXCHANGE)
            if exchange is not None and exchange.upstream_status is not None:
                metrics.observe_upstream(route, exchange.upstream_seconds)
            if access_log.isEnabledFor(logging.INFO):
                line = format_line(request, status, time.perf_counter() - started, route)
                handlers = access_log.handlers
                if json_logs and len(handlers) == 1 and isinstance(handlers[0], BatchingHandler):
                    handlers[0].add_line(line)  # a JSON line needs no LogRecord or formatter
                else:
                    access_log.info(line)

    return middleware


def _fields(request: web.Request, status: int, seconds: float, route: str) -> dict[str, object]:
    fields: dict[str, object] = {
        "request_id": request.get(REQUEST_ID),
        "remote": request.remote,
        "method": request.method,
        "path": request.rel_url.raw_path[:512],
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
    }
    exchange = request.get(EXCHANGE)
    if exchange is not None:
        fields.update(
            upstream_status=exchange.upstream_status,
            upstream_ms=round(exchange.upstream_seconds * 1000, 3),
            bytes_in=exchange.bytes_in,
            bytes_out=exchange.bytes_out,
        )
    principal = request.get(PRINCIPAL)
    if principal is not None:
        fields.update(sub=principal.sub, sid=principal.sid, jti=principal.jti)
    error = request.get(ERROR)
    if isinstance(error, GatewayError):
        fields["error"] = error.code
        if isinstance(error, InvalidToken):
            fields["reason"] = error.reason
    return fields


def _json_line(request: web.Request, status: int, seconds: float, route: str) -> str:
    return json.dumps(_fields(request, status, seconds, route), separators=(",", ":"))


def _text_line(request: web.Request, status: int, seconds: float, route: str) -> str:
    f = _fields(request, status, seconds, route)
    parts = [f"{f['remote']} {f['method']} {f['path']} {status} {f['duration_ms']}ms"]
    if "upstream_ms" in f:
        parts.append(f"upstream={f['upstream_status']} {f['upstream_ms']}ms")
    if "sub" in f:
        parts.append(f"sub={f['sub']} sid={f['sid']}")
    if "error" in f:
        parts.append(f"error={f['error']}" + (f"/{f['reason']}" if "reason" in f else ""))
    parts.append(f"id={f['request_id']}")
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
        self._pending: list[str] = []
        self._size = 0
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
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            self._size += len(line)
            full = self._size >= FLUSH_BYTES
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                return
            text = "\n".join(self._pending) + "\n"
            self._pending.clear()
            self._size = 0
            self.stream.write(text)
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


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
