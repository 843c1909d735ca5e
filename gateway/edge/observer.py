"""RequestObserver: what the edge reports about each request becomes metrics and access lines."""

from __future__ import annotations

import logging

from gateway.edge.access_lines import json_line, text_line
from gateway.edge.record import Exchange
from gateway.edge.request_view import RequestView
from gateway.errors import (
    InsufficientScope,
    InvalidToken,
    PolicyDenied,
    RevocationStale,
    StoreUnavailable,
)
from gateway.observability.logs import BatchingHandler, access_log
from gateway.observability.metrics import Metrics


class InFlight:
    """The requests one application is serving now (its edge middleware's observer): a
    reloaded configuration's applications are retired once none is left."""

    def __init__(self) -> None:
        self.in_flight = 0

    def started(self) -> None:
        self.in_flight += 1

    def finished(
        self, request: RequestView, exchange: Exchange, status: int, seconds: float
    ) -> None:
        self.in_flight -= 1


class RequestObserver(InFlight):
    """Counts every request and writes one access-log line for it (the edge middleware
    calls it: `started` as a request comes in, `finished` once it is answered)."""

    def __init__(self, metrics: Metrics, *, json_logs: bool):
        super().__init__()
        self._metrics = metrics
        self._json_logs = json_logs
        self._format_line = json_line if json_logs else text_line

    def started(self) -> None:
        self.in_flight += 1
        self._metrics.in_flight_now += 1

    def finished(
        self, request: RequestView, exchange: Exchange, status: int, seconds: float
    ) -> None:
        self.in_flight -= 1
        metrics = self._metrics
        metrics.in_flight_now -= 1
        route = exchange.route
        metrics.count_request(route, request.method, status)
        principal = exchange.principal
        if principal is not None:
            metrics.count_issuer(principal.provider or "gateway")
        error = exchange.error
        if isinstance(error, InvalidToken):
            metrics.count_auth_rejection(error.reason)
        elif isinstance(error, StoreUnavailable):
            metrics.redis_errors.inc()
        elif isinstance(error, RevocationStale):
            metrics.fail_closed.inc()
        elif isinstance(error, PolicyDenied | InsufficientScope):
            metrics.policy_refusals.labels(route, error.reason).inc()
        if exchange.upstream_status is not None:
            metrics.observe_upstream(route, exchange.upstream_seconds)
        if access_log.isEnabledFor(logging.INFO):
            line = self._format_line(request, exchange, status, seconds)
            handlers = access_log.handlers
            if self._json_logs and len(handlers) == 1 and isinstance(handlers[0], BatchingHandler):
                handlers[0].add_line(line)  # a JSON line needs no LogRecord or formatter
            else:
                access_log.info(line)
