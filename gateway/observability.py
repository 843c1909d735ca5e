"""Metrics (Prometheus, one registry per app) and the one-line-per-request access log.

Log lines carry ids (request id, sub, sid, jti), never a token, password or key; the query
string is never logged (clients put tokens there).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import deque
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.errors import InvalidToken, StoreUnavailable
from gateway.exchange import Exchange
from gateway.revocation import RevocationSync, RevocationView

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


class RequestObserver:
    """Counts every request and writes one access-log line for it (the edge middleware
    calls it: `started` as a request comes in, `finished` once it is answered)."""

    def __init__(self, metrics: Metrics, *, json_logs: bool):
        self._metrics = metrics
        self._json_logs = json_logs
        self._format_line = _json_line if json_logs else _text_line

    def started(self) -> None:
        self._metrics.in_flight.inc()

    def finished(
        self, request: web.Request, exchange: Exchange, status: int, seconds: float
    ) -> None:
        metrics = self._metrics
        metrics.in_flight.dec()
        route = exchange.route
        metrics.count_request(route, request.method, status)
        error = exchange.error
        if isinstance(error, InvalidToken):
            metrics.auth_rejections.labels(error.reason).inc()
        elif isinstance(error, StoreUnavailable):
            metrics.redis_errors.inc()
        if exchange.upstream_status is not None:
            metrics.observe_upstream(route, exchange.upstream_seconds)
        if access_log.isEnabledFor(logging.INFO):
            line = self._format_line(request, exchange, status, seconds)
            handlers = access_log.handlers
            if self._json_logs and len(handlers) == 1 and isinstance(handlers[0], BatchingHandler):
                handlers[0].add_line(line)  # a JSON line needs no LogRecord or formatter
            else:
                access_log.info(line)


def _json_string(value: str | None) -> str:
    """A JSON string literal; the common plain-ASCII case without json.dumps."""
    if value is None:
        return "null"
    if _PLAIN_JSON_STRING(value):
        return f'"{value}"'
    return json.dumps(value)


# Printable ASCII but `"` and `\`: such a string is its own JSON literal between quotes.
_PLAIN_JSON_STRING: Final = re.compile(r"[ !#-\[\]-~]*").fullmatch


def _json_line(request: web.Request, exchange: Exchange, status: int, seconds: float) -> str:
    """The access line as one JSON object, assembled directly (it is written per request)."""
    # request_id (validated or made), remote (an address) and method (llhttp admits known
    # methods only) never need escaping; the path, route and claims may.
    parts = [
        '{"request_id":"',
        exchange.request_id,
        '","remote":',
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
        parts += (
            ',"sub":',
            _json_string(principal.sub),
            ',"sid":',
            _json_string(principal.sid),
            ',"jti":',
            _json_string(principal.jti),
        )
    error = exchange.error
    if error is not None:
        parts += (',"error":', _json_string(error.code))
        if isinstance(error, InvalidToken):
            parts += (',"reason":', _json_string(error.reason))
    parts.append("}")
    return "".join(parts)


def _text_line(request: web.Request, exchange: Exchange, status: int, seconds: float) -> str:
    parts = [
        f"{request.remote} {request.method} {request.rel_url.raw_path[:512]} {status} "
        f"{seconds * 1000:.3f}ms"
    ]
    if exchange.upstream_status is not None:
        upstream_ms = exchange.upstream_seconds * 1000
        parts.append(f"upstream={exchange.upstream_status} {upstream_ms:.3f}ms")
    if exchange.principal is not None:
        parts.append(f"sub={exchange.principal.sub} sid={exchange.principal.sid}")
    error = exchange.error
    if error is not None:
        reason = f"/{error.reason}" if isinstance(error, InvalidToken) else ""
        parts.append(f"error={error.code}{reason}")
    parts.append(f"id={exchange.request_id}")
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


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
