"""Settings a running gateway reads only when it starts: its listeners, workers, Redis, the
revocation view, logs and tracing, and what its process-wide clients were built with. They
are marked `Annotated[T, RESTART]` in the settings models (a section marked whole counts with
every key in it); a reload that changes one is refused, naming each changed key.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from gateway.config.fields import RESTART
from gateway.config.settings import Settings


@cache
def restart_only_keys() -> tuple[str, ...]:
    """The dotted keys marked RESTART (`listen`, `admin.host`, `proxy.drain_timeout`, …)."""
    return tuple(_marked(Settings, ""))


def _marked(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if any(item is RESTART for item in field.metadata):
            keys.append(key)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.extend(_marked(field.annotation, f"{key}."))
    return keys


def is_restart_only(key: str) -> bool:
    """Whether a dotted key (`redis.url`, `routes[].prefix`) takes effect only at a restart."""
    return any(key == marked or key.startswith(f"{marked}.") for marked in restart_only_keys())


def restart_changes(running: Settings, loaded: Settings) -> list[str]:
    """The restart-only keys whose values differ between the two, each leaf named
    (`listen.port`, `redis.url`), in the order of the models."""
    old, new = running.model_dump(mode="json"), loaded.model_dump(mode="json")
    changed: list[str] = []
    for key in restart_only_keys():
        changed += _differences(key, _at(old, key), _at(new, key))
    return changed


def restart_refusal(changed: list[str]) -> str:
    """The refusal of a reload that changes restart-only settings."""
    keys = ", ".join(changed)
    return (
        f"restart required: {keys} changed, and a running gateway reads "
        f"{'it' if len(changed) == 1 else 'them'} only when it starts; nothing was reloaded "
        "(undo the change to reload the rest, or restart the gateway)"
    )


def _at(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _differences(key: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for name in [*old, *(n for n in new if n not in old)]:
            found += _differences(f"{key}.{name}", old.get(name), new.get(name))
        return found
    return [key]
