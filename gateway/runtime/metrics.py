"""Metrics: every Prometheus metric the gateway exports, on one registry per app."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.appkeys import METRICS
from gateway.authserver.federation.jwks import KeyState
from gateway.tokens.revocation_sync import RevocationSync
from gateway.tokens.revocation_view import RevocationView

STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
MAX_LABEL_SETS: Final = 10_000


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
        self.federated_logins = Counter(
            "gateway_federated_logins",
            "Token exchanges of identity-provider tokens by provider and outcome",
            ["provider", "outcome"],
            registry=r,
        )
        self.jwks_fetches = Counter(
            "gateway_jwks_fetches",
            "Fetches of identity providers' keys by provider and outcome (ok or why not)",
            ["provider", "outcome"],
            registry=r,
        )
        self.browser_refresh = Counter(
            "gateway_browser_refresh",
            "Browser session refreshes (cookie mode) by outcome",
            ["outcome"],
            registry=r,
        )
        self.csrf_rejections = Counter(
            "gateway_csrf_rejections",
            "Cookie-authenticated requests refused as cross-site, by reason",
            ["reason"],
            registry=r,
        )
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

    def record_federated_login(self, provider: str, outcome: str) -> None:
        self.federated_logins.labels(provider, outcome).inc()

    def record_jwks_fetch(self, provider: str, outcome: str) -> None:
        self.jwks_fetches.labels(provider, outcome).inc()

    def watch_provider_keys(self, states: Callable[[], Iterable[tuple[str, KeyState]]]) -> None:
        """Export the identity providers' key state, read at scrape time."""
        self._export.register(ProviderKeysCollector(states))

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


class ProviderKeysCollector(Collector):
    def __init__(self, states: Callable[[], Iterable[tuple[str, KeyState]]]):
        self._states = states

    def collect(self) -> list[Metric]:
        age = GaugeMetricFamily(
            "gateway_jwks_age_seconds",
            "Seconds since the provider's keys were last fetched (-1: never)",
            labels=["provider"],
        )
        keys = GaugeMetricFamily(
            "gateway_jwks_keys", "Usable keys of the provider held now", labels=["provider"]
        )
        usable = GaugeMetricFamily(
            "gateway_jwks_usable",
            "1 while the provider's keys can verify tokens (fresh, or stale within the bound)",
            labels=["provider"],
        )
        for name, state in self._states():
            age.add_metric([name], -1.0 if state.age is None else state.age)
            keys.add_metric([name], float(state.keys))
            usable.add_metric([name], 1.0 if state.status in ("ok", "stale") else 0.0)
        return [age, keys, usable]


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
