"""Rotating the signing key by three reloads and no restart: publish the next key, sign with
it once every verifier can know it, drop the old one once no token it signed is still
accepted. `gateway keys rotate` prints these steps with their earliest times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.authserver.wellknown import JWKS_MAX_AGE
from gateway.config import KeysSettings, TokenSettings


@dataclass(frozen=True)
class RotationStep:
    """One change of the configuration, reloaded on every instance."""

    number: int
    title: str
    change: str  # what to change in the configuration
    wait: float  # seconds after the previous step's reload, on the last instance
    because: str  # why it cannot come sooner (or what it does at once)
    earliest: datetime  # if the previous steps are reloaded as early as they may be


def rotation_plan(
    keys: KeysSettings,
    tokens: TokenSettings,
    *,
    new_kid: str,
    new_alg: str,
    entry: str,
    start: datetime | None = None,
) -> list[RotationStep]:
    """The steps from the active key to `new_kid` (`entry`: its keys.items entry), the
    first reloaded at `start` (now)."""
    old = keys.active or "(none)"
    start = start or datetime.now(UTC)
    publish_wait = float(JWKS_MAX_AGE) + tokens.leeway
    retire_wait = tokens.access_ttl + tokens.leeway
    allowlist = ""
    if new_alg not in keys.algorithms:
        allowlist = f" and add {new_alg} to keys.algorithms"
    published = (
        "It verifies on every reloaded instance at once and is published in /.well-known/jwks.json"
        if new_alg != "HS256"
        else "It verifies on every reloaded instance at once (an HS256 secret is never "
        "published: give it to every other verifier of these tokens too)"
    )
    steps = [
        (
            "publish the new key",
            f"Add to keys.items (keys.active stays {old}){allowlist}:\n     {entry}",
            0.0,
            f"{published}; nothing signs with it yet.",
        ),
        (
            "sign with the new key",
            f"Set keys.active: {new_kid}",
            publish_wait,
            f"Verifiers may cache the key set for {JWKS_MAX_AGE} s (JWKS Cache-Control "
            f"max-age) and clocks may differ by tokens.leeway ({tokens.leeway:g} s): by then "
            "every verifier knows the new key before a token signed with it reaches it.",
        ),
        (
            "drop the old key",
            f"Remove {old} from keys.items.",
            retire_wait,
            f"The last token {old} signed expires tokens.access_ttl ({tokens.access_ttl:g} s) "
            f"after the switch, and is accepted tokens.leeway ({tokens.leeway:g} s) longer: "
            "by then no token it signed is still accepted, so none is refused on the way.",
        ),
    ]
    plan = []
    when = start
    for number, (title, change, wait, because) in enumerate(steps, start=1):
        when += timedelta(seconds=wait)
        plan.append(RotationStep(number, title, change, wait, because, when))
    return plan


def signing_keys_besides_active(keys: KeysSettings) -> list[str]:
    """Keys in keys.items that could sign but are not active: a rotation in progress (a key
    published and not yet active, or the previous one not yet dropped)."""
    return [
        item.kid
        for item in keys.items
        if item.kid != keys.active
        and (item.private_key_file or item.private_key_env or item.secret_file or item.secret_env)
    ]


def duration(seconds: float) -> str:
    """`5 min 30 s`, `15 min 30 s`, `2 h 5 min`."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if secs or not parts:
        parts.append(f"{secs} s")
    return " ".join(parts)
