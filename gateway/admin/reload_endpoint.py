"""POST /admin/reload: the running gateway re-reads its configuration and the files it names
(SPEC §16). The reload itself is the process's (gateway.runtime.reloader); this endpoint asks
for it, audits it and answers with its outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from gateway.admin.actions import Actor, AdminActions
from gateway.appkeys import ADMIN_ID
from gateway.edge.own_routes import post_only
from gateway.errors import ConfigurationRefused, ReloadUnavailable

log = logging.getLogger("gateway.admin")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """How one process's reload ended."""

    reloaded: bool
    generation: int  # the configuration serving after it (1 at start, one more per reload)
    refusal: str | None = None  # why nothing was reloaded, as `gateway check-config` says it
    shutting_down: bool = False  # nothing was tried: the process is stopping


class ConfigReload(Protocol):
    """The process's reload, as the admin API asks for it."""

    async def reload_everywhere(self) -> ReloadOutcome:
        """Every worker reloads; the outcome of this process's own reload."""
        ...


class ReloadEndpoint:
    """POST /admin/reload: 200 {"reloaded": true, "generation": N}, or 400
    invalid_configuration with check-config's message (the running configuration keeps
    serving), or 503 when the gateway is stopping or the reload did not report back. Audited
    once it ran."""

    def __init__(self, reload: ConfigReload, actions: AdminActions):
        self._reload = reload
        self._actions = actions

    def routes(self) -> list[web.RouteDef]:
        return post_only(("/admin/reload", self.reload))

    async def reload(self, request: web.Request) -> web.Response:
        outcome = await self._reload.reload_everywhere()
        if outcome.shutting_down:
            raise ReloadUnavailable("the gateway is shutting down; nothing was reloaded")
        key_id = request[ADMIN_ID]
        await self._actions.config_reloaded(
            Actor(f"admin-key:{key_id}", request.remote),
            reloaded=outcome.reloaded,
            generation=outcome.generation,
            refusal=outcome.refusal,
        )
        log.info(
            "admin action reload_config reloaded=%s generation=%d by key %s",
            outcome.reloaded,
            outcome.generation,
            key_id,
        )
        if not outcome.reloaded:
            raise ConfigurationRefused(outcome.refusal)
        return web.json_response({"reloaded": True, "generation": outcome.generation})
