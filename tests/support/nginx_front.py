"""nginx in front of the gateway and an app, as deploy/nginx/ configures it: the shipped
template rendered into a temporary directory and run in the foreground there (pid, logs and
temporary files in that directory, free loopback ports)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Final, Protocol

from tests.support.repository import ROOT

NGINX: Final = "/usr/sbin/nginx"
INSTALL_NGINX: Final = "apt-get install nginx"
TEMPLATE: Final = ROOT / "deploy" / "nginx" / "forward-auth.conf.template"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)


def render(template: Path, **addresses: str) -> str:
    """The template with `${NAME}` replaced as envsubst does (nginx's own `$vars` stay)."""
    return Template(template.read_text()).safe_substitute(addresses)


def main_config(workdir: Path, included: Path) -> Path:
    """A whole nginx.conf around an http-context file: foreground, one worker, everything it
    writes inside `workdir`."""
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    paths = "\n".join(
        f"    {kind}_temp_path {temp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = workdir / "nginx.conf"
    config.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/access.log;
{paths}
    include {included};
}}
"""
    )
    return config


@dataclass
class NginxFront:
    """A running nginx: its base URL, process and directory."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text() if path.exists() else ""


class NginxFrontFactory(Protocol):
    """The `nginx_front` fixture: nginx in front of the gateway at `gateway` (host:port, its
    decisions there too unless `decisions` says where) and the app at `app`."""

    async def __call__(
        self, gateway: str, app: str, *, decisions: str | None = None
    ) -> NginxFront: ...


def check_config(binary: str, config: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a configuration."""
    return subprocess.run(
        [binary, "-t", "-p", str(workdir), "-e", str(workdir / "check.log"), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
