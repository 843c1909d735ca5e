"""deploy/: the Dockerfile, compose file and Kubernetes manifests agree with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import AdminSettings, ListenSettings, ProxySettings, Settings, load_settings
from gateway.errors import ConfigError
from tests.support.repository import DEPLOY

LISTEN_PORT = ListenSettings().port
ADMIN_PORT = AdminSettings().port


def k8s(kind: str) -> list[dict[str, Any]]:
    docs = [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    return [doc for doc in docs if doc.get("kind") == kind]


def load_with_key(config_text: str, tmp_path: Path, key_files: dict[str, Path]) -> Settings:
    """Validate a shipped config, with its key path pointed at a real key."""
    data = yaml.safe_load(config_text)
    for item in data["keys"]["items"]:
        item["private_key_file"] = str(key_files["EdDSA"])
    data["auth"]["users_file"] = str(DEPLOY / "demo-users.yaml")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))
    return load_settings(path)


def test_dockerfile_is_non_root_and_checks_health() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M)
    assert f"EXPOSE {LISTEN_PORT} {ADMIN_PORT}" in text
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert f"127.0.0.1:{LISTEN_PORT}/healthz" in healthcheck


def test_the_image_installs_the_lock_with_the_makefiles_uv() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    makefile = (DEPLOY.parent / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M)
    assert uv_version is not None
    assert f"ARG UV_VERSION={uv_version[1]}" in text
    assert "COPY pyproject.toml uv.lock" in text
    assert "--require-hashes" in text and "--no-deps ." in text


def test_compose_services_ports_and_probes() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"gateway", "redis", "upstream"}
    assert "--appendonly" in services["redis"]["command"]
    gateway = services["gateway"]
    assert {p.rsplit(":", 1)[1] for p in gateway["ports"]} == {str(LISTEN_PORT), str(ADMIN_PORT)}
    assert f"127.0.0.1:{LISTEN_PORT}/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_gateway_config_is_valid(tmp_path: Path, key_files: dict[str, Path]) -> None:
    settings = load_with_key((DEPLOY / "gateway.compose.yaml").read_text(), tmp_path, key_files)
    assert (settings.listen.port, settings.admin.port) == (LISTEN_PORT, ADMIN_PORT)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grace = int(compose["services"]["gateway"]["stop_grace_period"].rstrip("s"))
    assert grace > settings.proxy.drain_timeout


def test_k8s_manifests_parse_and_agree_with_the_code(
    tmp_path: Path, key_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (configmap,) = k8s("ConfigMap")
    monkeypatch.setenv(
        "GATEWAY_ADMIN__KEYS", json.dumps([{"id": "ops", "hash": "sha256:" + "0" * 64}])
    )
    settings = load_with_key(configmap["data"]["config.yaml"], tmp_path, key_files)
    assert [k.id for k in settings.admin.keys] == ["ops"]  # the Secret's env var is read

    (deployment,) = k8s("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.listen.port, "admin": settings.admin.port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": LISTEN_PORT}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": LISTEN_PORT}
    assert pod["terminationGracePeriodSeconds"] > settings.proxy.drain_timeout + 5  # + preStop
    assert pod["securityContext"]["runAsNonRoot"] is True

    # every mounted path the config names comes from a volume
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    original = yaml.safe_load(configmap["data"]["config.yaml"])
    key_dir = str(Path(original["keys"]["items"][0]["private_key_file"]).parent)
    users_dir = str(Path(original["auth"]["users_file"]).parent)
    assert {key_dir, users_dir, "/etc/gateway/config.yaml"} <= mounts

    secrets = {s["metadata"]["name"]: s for s in k8s("Secret")}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] in secrets
    key_name = Path(original["keys"]["items"][0]["private_key_file"]).name
    assert key_name in secrets[volumes["keys"]["secret"]["secretName"]]["stringData"]
    (env_from,) = container["envFrom"]
    assert "GATEWAY_ADMIN__KEYS" in secrets[env_from["secretRef"]["name"]]["stringData"]

    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    services = {s["metadata"]["name"]: s for s in k8s("Service")}
    assert {p["targetPort"] for s in services.values() for p in s["spec"]["ports"]} == {
        LISTEN_PORT,
        ADMIN_PORT,
    }
    assert all(s["spec"]["selector"] == labels for s in services.values())
    (pdb,) = k8s("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_k8s_secret_placeholders_stop_start_up_naming_the_key(
    tmp_path: Path, key_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (configmap,) = k8s("ConfigMap")
    admin = next(s for s in k8s("Secret") if "GATEWAY_ADMIN__KEYS" in s["stringData"])
    monkeypatch.setenv("GATEWAY_ADMIN__KEYS", admin["stringData"]["GATEWAY_ADMIN__KEYS"])
    with pytest.raises(ConfigError, match=r"admin\.keys\.0\.hash"):
        load_with_key(configmap["data"]["config.yaml"], tmp_path, key_files)


def test_forward_auth_examples_pass_the_gateways_identity_headers() -> None:
    """deploy/traefik/ and deploy/envoy/ (examples, not run) ask /auth/verify and pass on
    exactly the identity headers the gateway answers with; nginx's is run in
    tests/proxy/test_forward_auth_nginx.py."""
    identity = {h.lower() for h in ProxySettings().identity_headers.values()}
    traefik = yaml.safe_load((DEPLOY / "traefik" / "forward-auth.yaml").read_text())
    forward_auth = traefik["http"]["middlewares"]["gateway-forward-auth"]["forwardAuth"]
    assert forward_auth["address"].endswith("/auth/verify")
    assert forward_auth["trustForwardHeader"] is False
    assert {h.lower() for h in forward_auth["authResponseHeaders"]} == identity
    envoy = yaml.safe_load((DEPLOY / "envoy" / "envoy.yaml").read_text())
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    ext_authz = manager["typed_config"]["http_filters"][0]["typed_config"]
    assert ext_authz["failure_mode_allow"] is False
    service = ext_authz["http_service"]
    assert service["path_prefix"] == "/auth/verify"
    upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    assert {p["exact"] for p in upstream} == identity
    template = (DEPLOY / "nginx" / "forward-auth.conf.template").read_text()
    for header in identity:
        variable = "$upstream_http_" + header.replace("-", "_")
        assert variable in template
