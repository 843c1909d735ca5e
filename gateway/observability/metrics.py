"""Metrics: every Prometheus metric the gateway exports, on one registry per app."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # what the collectors read at scrape time, from the planes above
    from gateway.tokens.provider_keys import KeyState
    from gateway.tokens.revocation_sync import RevocationSync
    from gateway.tokens.revocation_view import RevocationView

STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
MAX_LABEL_SETS: Final = 10_000
# Written by the worker supervisor into the multiprocess directory: how many workers it has
# restarted (a worker that crashes in a loop shows as a fast-growing counter).
RESTARTS_FILE: Final = "worker-restarts"
# A counter sample: (sample name, sorted label pairs).
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


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
        self.provider_logins = Counter(
            "gateway_provider_logins",
            "Browser sign-ins at identity providers by provider and event: started, completed, "
            "failed (silent_* for silent re-logins: silent_started, silent_completed, "
            "silent_needs_user)",
            ["provider", "event"],
            registry=r,
        )
        self.provider_login_failures = Counter(
            "gateway_provider_login_failures",
            "Browser sign-ins at identity providers that failed, by provider and reason",
            ["provider", "reason"],
            registry=r,
        )
        self.backchannel_logouts = Counter(
            "gateway_backchannel_logouts",
            "Back-channel logout requests by provider and outcome (ended, no_sessions, refused)",
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
        self.policy_refusals = Counter(
            "gateway_policy_refusals",
            "Requests a route's rules refused, by route and reason (deny, allow, expr, "
            "expr_error, role, scope)",
            ["route", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited",
            "Requests refused by a route's rate limit, by route and key kind",
            ["route", "key"],
            registry=r,
        )
        self.rate_limit_syncs = Counter(
            "gateway_rate_limit_syncs",
            "Syncs of shared rate-limit buckets with Redis, by outcome (ok, failed)",
            ["outcome"],
            registry=r,
        )
        self.issuer_requests = Counter(
            "gateway_issuer_requests",
            "Requests admitted with a token, by its issuer (gateway or a provider's name)",
            ["issuer"],
            registry=r,
        )
        # Counted as plain ints on the hot path, added to the counter when sampled or scraped.
        self._issuer_pending: dict[str, int] = {}
        self.provider_token_rejections = Counter(
            "gateway_provider_token_rejections",
            "Identity providers' access tokens refused on routes, by provider and reason",
            ["provider", "reason"],
            registry=r,
        )
        self.forward_auth_decisions = Counter(
            "gateway_forward_auth_decisions",
            "Forward-auth decisions, by outcome (allowed, denied) and reason (the refusal's "
            "error code; `admitted` when allowed)",
            ["outcome", "reason"],
            registry=r,
        )
        self.forward_auth_untrusted = Counter(
            "gateway_forward_auth_untrusted",
            "Decision requests refused because the caller is not a trusted proxy",
            registry=r,
        )
        self.redis_errors = Counter(
            "gateway_redis_errors", "Requests that failed because Redis was unavailable", registry=r
        )
        self.in_flight = Gauge(
            "gateway_in_flight_requests",
            "Requests being served (each worker's count published when scraped and sampled)",
            registry=r,
            multiprocess_mode="livesum",
        )
        # The count itself is a plain int on the hot path: a prometheus Gauge takes a lock (and
        # writes a shared file under --workers) on every change.
        self.in_flight_now = 0
        self.fail_closed = Counter(
            "gateway_fail_closed_refusals",
            "Requests refused because the revocation view was stale (fail mode closed)",
            registry=r,
        )
        # Per worker (one series per live worker pid under --workers), sampled off the hot path.
        self.worker_started = Gauge(
            "gateway_worker_start_time_seconds",
            "Start time of each serving process (one series per worker pid under --workers)",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.worker_started.set_to_current_time()
        self.worker_requests = Gauge(
            "gateway_worker_requests",
            "Requests this serving process has answered since it started (sampled)",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.worker_cpu = Gauge(
            "gateway_worker_cpu_seconds",
            "CPU seconds this serving process has used since it started (sampled)",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.served = 0  # this process's requests: a plain int on the hot path
        # Configuration reloads (SIGHUP, `gateway reload`, POST /admin/reload), per process.
        self.config_reloads = Counter(
            "gateway_config_reloads",
            "Configuration reloads by outcome: ok (swapped in) or refused (the running one "
            "kept serving)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("ok", "refused"):
            self.config_reloads.labels(outcome)  # both series exported from the start
        self.config_generation = Gauge(
            "gateway_config_generation",
            "The configuration each serving process runs: 1 at start, one more per reload "
            "swapped in",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.config_loaded = Gauge(
            "gateway_config_loaded_time_seconds",
            "When each serving process's running configuration was loaded",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.config_last_reload_ok = Gauge(
            "gateway_config_last_reload_successful",
            "0 while the last reload of each serving process was refused, else 1",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.config_last_reload_ok.set(1)
        self._export.register(RestartsCollector(multiproc_dir))
        # Children bound once: the hot path does a dict lookup, not a label resolution.
        self._request_children: dict[tuple[str, str, str], Counter] = {}
        self._provider_keys: ProviderKeysCollector | None = None
        self._upstreams: UpstreamsCollector | None = None
        self._latency_children: dict[str, Histogram] = {}
        self._rejection_children: dict[str, Counter] = {}

    def count_request(self, route: str, method: str, status: int) -> None:
        self.served += 1
        key = (route, method, STATUS_CLASSES[min(max(status // 100, 1), 5) - 1])
        child = self._request_children.get(key)
        if child is None:
            if len(self._request_children) >= MAX_LABEL_SETS:  # methods are client-chosen
                key = (route, "OTHER", key[2])
            child = self.requests.labels(*key)
            self._request_children[key] = child
        child.inc()

    def count_auth_rejection(self, reason: str) -> None:
        """One refused bearer token (reasons are the gateway's own: a fixed set)."""
        child = self._rejection_children.get(reason)
        if child is None:
            child = self._rejection_children[reason] = self.auth_rejections.labels(reason)
        child.inc()

    def count_issuer(self, issuer: str) -> None:
        """One request admitted with a token of `issuer` (a dict update, nothing more)."""
        pending = self._issuer_pending
        pending[issuer] = pending.get(issuer, 0) + 1

    def record_provider_rejection(self, provider: str, reason: str) -> None:
        self.provider_token_rejections.labels(provider, reason).inc()

    def _flush_issuers(self) -> None:
        pending, self._issuer_pending = self._issuer_pending, {}
        for issuer, count in pending.items():
            self.issuer_requests.labels(issuer).inc(count)

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

    def record_provider_login(self, provider: str, event: str, reason: str) -> None:
        self.provider_logins.labels(provider, event).inc()
        if event == "failed":
            self.provider_login_failures.labels(provider, reason).inc()

    def record_backchannel_logout(self, provider: str, outcome: str) -> None:
        self.backchannel_logouts.labels(provider, outcome).inc()

    def record_jwks_fetch(self, provider: str, outcome: str) -> None:
        self.jwks_fetches.labels(provider, outcome).inc()

    def configuration_loaded(self, generation: int, loaded_at: float) -> None:
        """A configuration was swapped in (the first one at start)."""
        self.config_generation.set(generation)
        self.config_loaded.set(loaded_at)

    def reload_done(self, *, ok: bool) -> None:
        self.config_reloads.labels("ok" if ok else "refused").inc()
        self.config_last_reload_ok.set(1 if ok else 0)

    def watch_provider_keys(
        self, states: Callable[[], Iterable[tuple[str, KeyState]]] | None
    ) -> None:
        """Export the identity providers' key state, read at scrape time; a later call (the
        providers of a reloaded configuration) replaces the earlier source, and None (a
        configuration without providers) empties it."""
        if states is None:
            if self._provider_keys is not None:
                self._provider_keys.states = lambda: ()
            return
        if self._provider_keys is None:
            self._provider_keys = ProviderKeysCollector(states)
            self._export.register(self._provider_keys)
        else:
            self._provider_keys.states = states

    def watch_upstreams(self, targets: Callable[[], Iterable[TargetSample]]) -> None:
        """Export the upstream pools' targets, read at scrape time; a later call (the pools of
        a reloaded configuration) replaces the earlier source."""
        if self._upstreams is None:
            self._upstreams = UpstreamsCollector(targets)
            self._export.register(self._upstreams)
        else:
            self._upstreams.targets = targets

    def render(self) -> bytes:
        self.in_flight.set(self.in_flight_now)
        self._flush_issuers()
        return generate_latest(self._export)

    async def handler(self, _request: web.Request) -> web.Response:
        """GET /metrics: Prometheus text format."""
        return web.Response(body=self.render(), content_type="text/plain", charset="utf-8")

    def sample_worker(self) -> None:
        """Publish this process's request count and CPU time (called periodically)."""
        self.worker_requests.set(self.served)
        self.worker_cpu.set(time.process_time())
        self.in_flight.set(self.in_flight_now)
        self._flush_issuers()

    def counter_totals(self, families: Iterable[str]) -> dict[SampleKey, float]:
        """Current `<family>_total` values by label set, added up over every worker."""
        wanted = set(families)
        totals: dict[SampleKey, float] = {}
        for family in self._export.collect():
            if family.name not in wanted:
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    totals[key] = totals.get(key, 0.0) + sample.value
        return totals


class RevocationCollector(Collector):
    def __init__(self, sync: RevocationSync, view: RevocationView):
        self._sync = sync
        self._view = view

    def collect(self) -> list[Metric]:
        staleness = self._sync.staleness()
        unreadable = CounterMetricFamily(
            "gateway_revocation_unreadable",
            "Revocation records (each key once; treated as revoked) and channel messages "
            "that could not be read",
            labels=["source"],
        )
        unreadable.add_metric(["record"], self._sync.unreadable_records)
        unreadable.add_metric(["message"], self._sync.unreadable_messages)
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
            unreadable,
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
        self.states = states

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
        for name, state in self.states():
            age.add_metric([name], -1.0 if state.age is None else state.age)
            keys.add_metric([name], float(state.keys))
            usable.add_metric([name], 1.0 if state.status in ("ok", "stale") else 0.0)
        return [age, keys, usable]


class TargetSample(NamedTuple):
    """One target of an upstream pool as a scrape sees it."""

    upstream: str
    target: str  # its URL
    state: str  # up, backing_off, unhealthy
    in_flight: int
    failures: int  # failed attempts since its configuration was loaded


TARGET_STATES: Final = ("up", "backing_off", "unhealthy")


class UpstreamsCollector(Collector):
    def __init__(self, targets: Callable[[], Iterable[TargetSample]]):
        self.targets = targets

    def collect(self) -> list[Metric]:
        labels = ["upstream", "target"]
        in_flight = GaugeMetricFamily(
            "gateway_upstream_target_in_flight",
            "Requests this worker has in flight to the target",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "gateway_upstream_target_state",
            "1 for the target's state: up (in rotation), backing_off (failed, tried again "
            "after its back-off), unhealthy (failing its health checks)",
            labels=[*labels, "state"],
        )
        failures = CounterMetricFamily(
            "gateway_upstream_target_failures",
            "Attempts on the target that failed (refused, reset, timed out); counted from the "
            "configuration's load",
            labels=labels,
        )
        for sample in self.targets():
            key = [sample.upstream, sample.target]
            in_flight.add_metric(key, float(sample.in_flight))
            failures.add_metric(key, float(sample.failures))
            for name in TARGET_STATES:
                state.add_metric([*key, name], 1.0 if sample.state == name else 0.0)
        return [in_flight, state, failures]


class RestartsCollector(Collector):
    """gateway_worker_restarts_total: read from the supervisor's file (0 without one)."""

    def __init__(self, multiproc_dir: str | None):
        self._path = Path(multiproc_dir, RESTARTS_FILE) if multiproc_dir else None

    def collect(self) -> list[Metric]:
        restarts = 0
        if self._path is not None:
            try:
                restarts = int(self._path.read_text() or 0)
            except (OSError, ValueError):
                restarts = 0
        return [
            CounterMetricFamily(
                "gateway_worker_restarts",
                "Workers the supervisor restarted after they exited unexpectedly",
                value=restarts,
            )
        ]
