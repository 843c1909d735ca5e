"""`gateway keys rotate`: the three reloads of a signing-key rotation and their earliest times,
computed from tokens.access_ttl, tokens.leeway and the JWKS cache max-age."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gateway.authserver.key_rotation import duration, rotation_plan, signing_keys_besides_active
from gateway.authserver.wellknown import JWKS_MAX_AGE
from gateway.config import KeySettings, Settings
from gateway.tokens.keys import load_key
from tests.support.gateway_cli import run_cli
from tests.support.gateway_settings import base_settings

START = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


def test_the_waits_come_from_the_cache_age_the_ttl_and_the_leeway(
    key_files: dict[str, Path],
) -> None:
    settings = base_settings(
        key_files, "http://127.0.0.1:9000", tokens={"access_ttl": 600, "leeway": 20}
    )
    plan = rotation_plan(
        settings.keys,
        settings.tokens,
        new_kid="ed2",
        new_alg="EdDSA",
        entry="- {kid: ed2, alg: EdDSA, private_key_file: keys/ed2.pem}",
        start=START,
    )
    assert [step.title for step in plan] == [
        "publish the new key",
        "sign with the new key",
        "drop the old key",
    ]
    assert [step.wait for step in plan] == [0, JWKS_MAX_AGE + 20, 600 + 20]
    assert [step.earliest for step in plan] == [
        START,
        START + timedelta(seconds=320),
        START + timedelta(seconds=940),
    ]
    assert "keys.active stays ed1" in plan[0].change
    assert "ed2, alg: EdDSA" in plan[0].change
    assert plan[1].change == "Set keys.active: ed2"
    assert plan[2].change == "Remove ed1 from keys.items."
    assert "jwks.json" in plan[0].because


def test_a_new_algorithm_joins_the_allowlist_and_secrets_are_not_published() -> None:
    settings = Settings(keys={"algorithms": ["EdDSA"]})  # type: ignore[arg-type]
    plan = rotation_plan(
        settings.keys, settings.tokens, new_kid="h2", new_alg="HS256", entry="- {...}"
    )
    assert "add HS256 to keys.algorithms" in plan[0].change
    assert "never published" in plan[0].because


def test_signing_keys_besides_the_active_one(key_files: dict[str, Path]) -> None:
    settings = base_settings(key_files, "http://127.0.0.1:9000")
    assert signing_keys_besides_active(settings.keys) == ["es1", "hs1"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (330, "5 min 30 s"), (930, "15 min 30 s"), (7500, "2 h 5 min")],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.slow
def test_cli_prints_the_plan_and_writes_the_key(tmp_path: Path, key_files: dict[str, Path]) -> None:
    signer = {"kid": "ed1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])}
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps({"keys": {"active": "ed1", "items": [signer]}, "tokens": {"access_ttl": 900}})
    )
    out = tmp_path / "next.pem"
    args = ("keys", "rotate", "--config", str(config), "--kid", "ed2", "--out", str(out))
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Signing key rotation ed1 → ed2 (EdDSA)" in text
    assert "5 min 30 s after step 1" in text
    assert "15 min 30 s after step 2" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # the entry it prints is one keys.items takes, and the key it names signs
    line = next(line for line in text.splitlines() if line.strip().startswith("- {kid: ed2"))
    entry = KeySettings(**yaml.safe_load(line.strip())[0])
    assert load_key(entry, {}).sign_key is not None

    again = run_cli(*args)
    assert again.returncode == 2
    assert "refusing to overwrite" in again.stderr
