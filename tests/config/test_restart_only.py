"""Settings read only at start: marked in the models, named when a reload changes them, and
the only ones the process's long-lived Resources are built from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from gateway.config import Settings
from gateway.config.restart_only import (
    is_restart_only,
    restart_changes,
    restart_only_keys,
    restart_refusal,
)
from gateway.services import build_resources
from tests.support.gateway_settings import base_settings
from tests.support.repository import DOCS


def test_the_marked_keys() -> None:
    keys = set(restart_only_keys())
    assert {"listen", "admin.host", "admin.port", "redis", "proxy.drain_timeout"} <= keys
    for reloadable in ("routes", "keys", "auth", "admin.keys", "browser", "proxy.header_timeout"):
        assert not is_restart_only(reloadable), reloadable
    assert is_restart_only("listen.workers") and is_restart_only("redis.url")
    assert not is_restart_only("listening")  # whole segments only


def test_the_reload_page_lists_them() -> None:
    page = (DOCS / "reload.md").read_text()
    block = page.split("<!-- restart-only:begin")[1].split("<!-- restart-only:end -->")[0]
    listed = re.findall(r"`([a-z_.]+)`", block.split("-->", 1)[1])
    assert listed == list(restart_only_keys())


def test_changes_are_named_leaf_by_leaf() -> None:
    running = Settings()
    loaded = Settings.model_validate(
        {
            "listen": {"port": 9000, "workers": 4},
            "admin": {"host": "0.0.0.0", "keys": []},
            "redis": {"url": "redis://127.0.0.1:6390/0"},
            "tracing": {"otel": {"enabled": True}},
        }
    )
    assert restart_changes(running, loaded) == [
        "listen.port",
        "listen.workers",
        "admin.host",
        "redis.url",
        "tracing.otel.enabled",
    ]
    message = restart_refusal(restart_changes(running, loaded))
    assert message.startswith("restart required: listen.port, listen.workers, admin.host")
    assert "nothing was reloaded" in message


def test_reloadable_changes_are_not_named(key_files: dict[str, Path]) -> None:
    running = base_settings(key_files, "http://127.0.0.1:9000")
    loaded = base_settings(
        key_files,
        "http://127.0.0.1:9001",
        proxy={"header_timeout": 5, "max_body_size": 10},
        keys={"active": "es1"},
        admin={"keys": []},
        environment="development",
    )
    assert running != loaded
    assert restart_changes(running, loaded) == []


class Recorder:
    """Stands in for a settings object and records every key read through it."""

    def __init__(self, model: BaseModel, prefix: str, read: set[str]):
        self._model = model
        self._prefix = prefix
        self._read = read

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        key = f"{self._prefix}{name}"
        if isinstance(value, BaseModel):
            return Recorder(value, f"{key}.", self._read)
        self._read.add(key)
        return value


async def reads_of_resources(settings: Settings) -> list[str]:
    """Every key read to build the Resources and open their clients."""
    read: set[str] = set()
    resources = build_resources(Recorder(settings, "", read))  # type: ignore[arg-type]
    await resources.http.open()  # the shared client reads its settings as it opens
    await resources.http.close()
    await resources.store.redis.aclose()
    resources.telemetry.shutdown()
    return sorted(read)


@pytest.mark.parametrize(
    "sections",
    [
        {},
        {"tracing": {"mode": "restart", "otel": {"enabled": True}}},
        {"redis": {"url": "redis://127.0.0.1:1/0", "min_replicas_ack": 1}},
    ],
)
async def test_resources_are_built_from_restart_only_settings_alone(
    key_files: dict[str, Path], sections: dict[str, Any]
) -> None:
    """What the process keeps across reloads is built once: every setting it reads must be
    one a reload refuses to change, or a reload would silently not apply it."""
    settings = base_settings(key_files, "http://127.0.0.1:9000", **sections)
    read = await reads_of_resources(settings)
    assert "redis.url" in read and "proxy.max_concurrency" in read
    assert [key for key in read if not is_restart_only(key)] == []
