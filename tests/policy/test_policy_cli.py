"""`gateway policy explain` and `gateway check-config`'s report of rules that never match,
as an operator runs them (the command line's entry point, a configuration file, no gateway,
no Redis)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.support.jwt_tokens import AUDIENCE, ISSUER, mint


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """`gateway ARGS` in this process: exit status and what it printed."""

    def run(*args: str) -> Ran:
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Ran(status, out, err)

    return run


@pytest.fixture
def config(tmp_path: Path, key_files: dict[str, Path]) -> Path:
    up = "http://127.0.0.1:9"
    data: dict[str, Any] = {
        "redis": {"url": "redis://127.0.0.1:1"},  # never reached
        "tokens": {"issuer": ISSUER, "audience": AUDIENCE},
        "keys": {
            "active": "ed1",
            "items": [{"kid": "ed1", "alg": "EdDSA", "private_key_file": str(key_files["EdDSA"])}],
        },
        "routes": [
            {
                "prefix": "/orders/",
                "name": "orders-read",
                "methods": ["GET"],
                "allow": {
                    "any": [{"roles": ["staff"]}, {"claim": {"name": "groups", "contains": "ops"}}]
                },
                "limits": [{"key": "sub", "rate": 5, "per": 1, "burst": 10}],
            },
            {"prefix": "/orders/", "name": "orders-write", "allow": {"roles": ["orders-admin"]}},
            {"prefix": "/public/", "policy": "public"},
            {
                "prefix": "/",
                "hosts": ["partners.example.com"],
                "name": "partners",
                "deny": {"not": {"client_id": "acme"}},
            },
            {"prefix": "/"},
        ],
    }
    for route in data["routes"]:
        route["upstream"] = up
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))
    return path


def test_explain_an_admitted_request(
    run_cli: Callable[..., Ran], config: Path, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, groups=["ops"])
    result = run_cli(
        "policy", "explain", "--config", str(config), "--token", token, "--path", "/orders/7"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "route: orders-read (prefix /orders; policy required; methods GET, HEAD)" in out
    assert "token: valid, sub alice" in out
    assert "revocations are not consulted" in out
    assert "[yes] allow[0]: any of" in out
    assert "[no ] allow[0].any[0]: roles ['staff']  (missing ['staff'])" in out
    assert "[yes] allow[0].any[1]: claim 'groups' contains …" in out
    assert "limit: 5 per 1 s, burst 10, per sub" in out
    assert out.rstrip().endswith("decision: admitted")
    assert token not in out


def test_explain_a_refused_request(
    run_cli: Callable[..., Ran], config: Path, key_files: dict[str, Path]
) -> None:
    token = mint(key_files, client_id="other")
    result = run_cli(
        "policy",
        "explain",
        "--config",
        str(config),
        "--token",
        token,
        "--method",
        "post",
        "--path",
        "/anything",
        "--host",
        "Partners.Example.com.",
    )
    assert result.returncode == 1
    assert "route: partners" in result.stdout
    assert (
        "decision: refused, 403 access_denied (refused by rule deny[0] of route partners)"
        in result.stdout
    )


def test_explain_without_a_token_and_with_a_bad_one(
    run_cli: Callable[..., Ran], config: Path
) -> None:
    anonymous = run_cli("policy", "explain", "--config", str(config), "--path", "/x")
    assert anonymous.returncode == 1
    assert "decision: refused, 401" in anonymous.stdout
    public = run_cli("policy", "explain", "--config", str(config), "--path", "/public/a")
    assert public.returncode == 0 and "rules: none" in public.stdout
    forged = run_cli(
        "policy", "explain", "--config", str(config), "--token", "a.b.c", "--path", "/x"
    )
    assert forged.returncode == 1
    assert "token: refused (malformed" in forged.stdout


def test_check_config_warns_of_rules_that_never_match(
    run_cli: Callable[..., Ran], tmp_path: Path, config: Path
) -> None:
    data = json.loads(config.read_text())
    data["routes"].insert(
        0, {"prefix": "/x/", "upstream": "http://127.0.0.1:9", "deny": {"authenticated": True}}
    )
    config.write_text(json.dumps(data))
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "warning: routes[/x/]: deny refuses every request" in result.stderr
    assert '"allow": [' in result.stdout and '"any": [' in result.stdout  # keys as configured


def test_check_config_refuses_a_bad_expression(run_cli: Callable[..., Ran], config: Path) -> None:
    data = json.loads(config.read_text())
    data["routes"][0]["expr"] = "claims.groups.exists(g, g =="
    config.write_text(json.dumps(data))
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "routes[orders-read].expr: " in result.stderr
