"""The gateway refuses to serve on an aiohttp release it was not tested with (it overrides
aiohttp internals), and its tested range is the one pyproject.toml allows."""

from __future__ import annotations

import tomllib

import aiohttp
import pytest

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.runtime import supervisor
from gateway.runtime.supervisor import AIOHTTP_TESTED, require_tested_aiohttp
from tests.support.repository import ROOT

PYPROJECT = ROOT / "pyproject.toml"


@pytest.mark.parametrize("version", ["3.14.1", "3.14.5", "3.14.12", "3.14.2.post1"])
def test_a_tested_release_is_accepted(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(aiohttp, "__version__", version)
    require_tested_aiohttp()


@pytest.mark.parametrize("version", ["3.15.0", "3.15.0a1", "3.14.0", "3.13.3", "4.0.0", "junk"])
def test_an_untested_release_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(aiohttp, "__version__", version)
    with pytest.raises(ConfigError) as refused:
        require_tested_aiohttp()
    assert f"aiohttp {version} is installed" in str(refused.value)
    assert "aiohttp>=3.14.1,<3.15" in str(refused.value)


def test_the_installed_release_is_a_tested_one() -> None:
    require_tested_aiohttp()


def test_serving_starts_with_the_check(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    def must_not_serve(*args: object, **kwargs: object) -> None:
        raise AssertionError("served on an untested aiohttp")

    monkeypatch.setattr(supervisor, "run_loop", must_not_serve)
    monkeypatch.setattr(aiohttp, "__version__", "3.15.0")
    with pytest.raises(ConfigError, match=r"aiohttp 3\.15\.0"):
        supervisor.run(settings)


def test_pyproject_bounds_aiohttp_to_the_tested_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    low, high = (".".join(map(str, bound)) for bound in AIOHTTP_TESTED)
    assert f"aiohttp>={low},<{high}" in dependencies
