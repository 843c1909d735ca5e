"""CounterHistory: how much the gateway's counters grew over the last minutes."""

from __future__ import annotations

from gateway.observability.counter_history import CounterHistory
from gateway.observability.metrics import Metrics, SampleKey

ROTATED: SampleKey = ("gateway_refresh_total", (("outcome", "rotated"),))
REUSE: SampleKey = ("gateway_refresh_total", (("outcome", "reuse_detected"),))


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_increase_over_each_window_from_periodic_samples() -> None:
    totals: dict[SampleKey, float] = {ROTATED: 0.0}
    clock = Ticker()
    history = CounterHistory(lambda: dict(totals), span=900, clock=clock)
    for _ in range(200):  # 1000 s of samples every 5 s, one rotation per sample
        history.sample()
        totals[ROTATED] += 1
        clock.now += 5
    totals[REUSE] = 2.0  # a label set first seen now
    one = history.increase(60)
    assert one.seconds == 60
    assert one.by_label("gateway_refresh_total", "outcome") == {
        "rotated": 12.0,
        "reuse_detected": 2.0,
    }
    assert history.increase(300).by_label("gateway_refresh_total", "outcome")["rotated"] == 60
    fifteen = history.increase(900)
    assert (fifteen.seconds, fifteen.deltas[ROTATED]) == (900, 180)
    assert history.increase(5000).seconds <= 905  # older samples are not kept


def test_right_after_start_a_window_covers_what_there_is() -> None:
    totals: dict[SampleKey, float] = {ROTATED: 3.0}
    clock = Ticker()
    history = CounterHistory(lambda: dict(totals), clock=clock)
    assert history.increase(60).seconds == 0  # nothing sampled yet: no growth over nothing
    history.sample()
    totals[ROTATED] = 5.0
    clock.now += 20
    increase = history.increase(300)
    assert (increase.seconds, increase.deltas[ROTATED]) == (20, 2.0)


def test_a_counter_going_down_never_shows_negative() -> None:
    totals: dict[SampleKey, float] = {ROTATED: 10.0}
    clock = Ticker()
    history = CounterHistory(lambda: dict(totals), clock=clock)
    history.sample()
    totals[ROTATED] = 4.0  # a worker's counts gone with it
    clock.now += 30
    assert history.increase(60).deltas[ROTATED] == 0.0


def test_metrics_counter_totals_read_the_registry() -> None:
    metrics = Metrics()
    metrics.refresh.labels("rotated").inc(3)
    metrics.logins.labels("bad_credentials").inc()
    metrics.redis_errors.inc(2)
    totals = metrics.counter_totals(["gateway_refresh", "gateway_redis_errors"])
    assert totals == {ROTATED: 3.0, ("gateway_redis_errors_total", ()): 2.0}
    metrics.count_request("/", "GET", 200)
    metrics.sample_worker()
    text = metrics.render().decode()
    assert "gateway_worker_requests 1.0" in text
    assert "gateway_worker_cpu_seconds " in text
    assert "gateway_worker_restarts_total 0.0" in text
