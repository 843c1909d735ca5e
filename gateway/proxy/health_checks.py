"""Active health checks of a pool's targets (`upstreams.<name>.health`): every `interval`, a
GET of `path` to each target over the proxy's own client (its TLS included), within
`timeout`. A 2xx or 3xx answer passes and brings the target back (its back-off forgotten);
anything else (another status, refused, reset, too slow) takes it out of rotation until a
check passes. One loop per pool, run by its configuration's lifetime: a reload stops the
retiring configuration's loops and starts the new one's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any, Final

from gateway.config import UpstreamHealthSettings
from gateway.proxy.upstream import UpstreamError, UpstreamPool
from gateway.proxy.upstream_group import Target, UpstreamGroup

log = logging.getLogger("gateway.proxy")

MAX_CHECK_BODY: Final = 64 * 1024  # read (and dropped) so the connection can be kept


class HealthChecks:
    """The checking loops of a configuration's pools that have `health`."""

    def __init__(
        self,
        pool: UpstreamPool,
        groups: Mapping[str, UpstreamGroup],
        settings: Mapping[str, UpstreamHealthSettings | None],
    ):
        self._pool = pool
        self._checked = [(groups[name], health) for name, health in settings.items() if health]

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        """A coroutine per checked pool, to run in the background until cancelled."""
        return [self._loop(group, health) for group, health in self._checked]

    async def _loop(self, group: UpstreamGroup, health: UpstreamHealthSettings) -> None:
        while True:
            await asyncio.gather(*(self.check(group, t, health) for t in group.targets))
            await asyncio.sleep(health.interval)

    async def check(
        self, group: UpstreamGroup, target: Target, health: UpstreamHealthSettings
    ) -> bool:
        """One check of one target; its outcome is applied to the target and returned."""
        try:
            status = await asyncio.wait_for(self._probe(target, health.path), health.timeout)
        except TimeoutError:
            problem: str | None = f"health check timed out after {health.timeout:g} s"
        except UpstreamError as exc:
            problem = f"health check failed: {exc}"
        except Exception:  # anything else fails this check, never the loop that runs them
            log.exception("upstream %s: health check of %s failed", group, target.url)
            problem = "health check failed (see the gateway's log)"
        else:
            problem = None if 200 <= status < 400 else f"health check answered {status}"
        was_failing = target.checks_failing
        if problem is None:
            target.checks_failing = False
            group.succeeded(target)
            if was_failing:
                log.info("upstream %s: %s passes its health check again", group, target.url)
            return True
        target.checks_failing = True
        target.last_error = problem
        if not was_failing:
            log.warning("upstream %s: %s out of rotation (%s)", group, target.url, problem)
        return False

    async def _probe(self, target: Target, path: str) -> int:
        fields = [
            (b"Host", target.authority.encode("latin-1")),
            (b"User-Agent", b"gateway-health-check"),
        ]
        response = await self._pool.request(
            "GET", target.endpoint, target.base_path + path, fields, None
        )
        try:
            read = 0
            async for chunk in response.iter_chunks():
                read += len(chunk)
                if read > MAX_CHECK_BODY:
                    response.close()
                    return response.status
        except BaseException:
            response.close()
            raise
        response.release()
        return response.status
