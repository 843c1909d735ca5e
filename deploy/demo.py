"""`make demo`: start the echo upstream, the demo identity provider, the demo OpenID provider
(browser sign-in) and the gateway with config.yaml, print the walk-through."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.yaml"
PID_FILE = ROOT / ".demo" / "gateway.pid"  # for `gateway reload --pid-file`
GATEWAY = "http://127.0.0.1:8080"
ADMIN = "http://127.0.0.1:8081"
IDP = "http://127.0.0.1:9100"
OP = "http://127.0.0.1:9200"


def wait_for_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


WALKTHROUGH = """
Demo is running: echo upstream on 127.0.0.1:9000, gateway on {gw}, admin API on {admin},
demo identity provider (demo-idp) on {idp}, demo OpenID provider (demo-op) on {op}.
Users: alice / wonderland (role user), bob / builder (roles user, reports).
Admin API key: demo-admin-key; the admin console: {admin}/admin/console/ (sign in with
the same key). Walk through it in another shell:

  field() {{ python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }}

  # a public route needs no token; a protected one without a token is 401
  curl -s {gw}/public/hello
  curl -si {gw}/api/orders

  # log in (one session per device); the response carries both tokens
  LOGIN=$(curl -s -X POST {gw}/auth/login -H 'Content-Type: application/json' \\
    -d '{{"username":"alice","password":"wonderland","device_id":"laptop","device_name":"Laptop"}}')
  ACCESS=$(echo "$LOGIN" | field access_token); REFRESH=$(echo "$LOGIN" | field refresh_token)
  SID=$(echo "$LOGIN" | field session_id)

  # the upstream sees X-User-Id / X-User-Roles / X-Session-Id from the gateway, not the forgery
  curl -s -H "Authorization: Bearer $ACCESS" -H 'X-User-Id: mallory' {gw}/api/orders

  # /reports/ needs the role "reports": alice gets 403
  curl -si -H "Authorization: Bearer $ACCESS" {gw}/reports/q3

  # rotate: a new pair; the old refresh token is spent (reuse after 10 s ends the session)
  PAIR=$(curl -s -X POST {gw}/auth/refresh -H 'Content-Type: application/json' \\
    -d "{{\\"refresh_token\\":\\"$REFRESH\\"}}")
  ACCESS=$(echo "$PAIR" | field access_token); REFRESH=$(echo "$PAIR" | field refresh_token)

  # the caller's sessions, one per device
  curl -s -H "Authorization: Bearer $ACCESS" {gw}/auth/sessions

  # operators: revoke the session from the admin listener; the next call is 401 revoked
  curl -s -X DELETE -H 'Authorization: Bearer demo-admin-key' {admin}/admin/sessions/$SID
  curl -si -H "Authorization: Bearer $ACCESS" {gw}/api/orders
  curl -s -H 'Authorization: Bearer demo-admin-key' {admin}/admin/audit

  # log in again and log out: the access token stops working at once
  ACCESS=$(curl -s -X POST {gw}/auth/login -H 'Content-Type: application/json' \\
    -d '{{"username":"bob","password":"builder"}}' | field access_token)
  curl -s -H "Authorization: Bearer $ACCESS" {gw}/reports/q3
  curl -si -X POST -H "Authorization: Bearer $ACCESS" {gw}/auth/logout
  curl -si -H "Authorization: Bearer $ACCESS" {gw}/reports/q3

  # OAuth 2.0 metadata and public keys
  curl -s {gw}/.well-known/oauth-authorization-server
  curl -s {gw}/.well-known/jwks.json

  # sign in with an identity provider: get an ID token from demo-idp (DEMO ONLY: it signs
  # one for any username), exchange it (RFC 8693); the session's sub is demo-idp:carol
  ID_TOKEN=$(curl -s -X POST {idp}/token -d username=carol | field id_token)
  FED=$(curl -s -X POST {gw}/auth/token \\
    -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\
    -d subject_token_type=urn:ietf:params:oauth:token-type:id_token \\
    -d device_name=CLI -d "subject_token=$ID_TOKEN")
  echo "$FED"; ACCESS=$(echo "$FED" | field access_token)
  curl -s -H "Authorization: Bearer $ACCESS" {gw}/reports/q3
  # demo-idp's "alice" is linked to the local user alice (deploy/demo-users.yaml)
  ID_TOKEN=$(curl -s -X POST {idp}/token -d username=alice | field id_token)

  # another service asks whether a token is live (RFC 7662, HTTP Basic); never a reason
  curl -s -u demo-service:demo-introspect-secret -d "token=$ACCESS" {gw}/auth/introspect
  curl -s -u demo-service:demo-introspect-secret -d token=bogus {gw}/auth/introspect

  # trace context reaches the upstream unchanged; the access log shows its trace id
  curl -s -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \\
    {gw}/public/traced

Apps and machines (docs/clients.md). The password grant above is on for this walk-through;
OAuth 2.1 drops it, and apps sign users in with the authorization code flow instead:

  # an app: code flow with PKCE through the gateway's sign-in page (demo-app, a public
  # client with a loopback redirect on any port): opens your browser, then calls the API
  .venv/bin/python deploy/demo_app.py

  # a machine: client credentials (demo-batch / demo-batch-secret); sub client:demo-batch
  MACHINE=$(curl -s -u demo-batch:demo-batch-secret -d grant_type=client_credentials \
    {gw}/auth/token | field access_token)
  curl -s -H "Authorization: Bearer $MACHINE" {gw}/api/jobs
  # ... and every token of it revoked at once (also: gateway revoke client demo-batch)
  curl -s -X POST -H 'Authorization: Bearer demo-admin-key' {admin}/admin/clients/demo-batch/revoke

  # an identity provider's own access token on a route that accepts it (routes[].accept)
  IDP_ACCESS=$(curl -s -X POST {idp}/token -d username=carol | field access_token)
  curl -s -H "Authorization: Bearer $IDP_ACCESS" {gw}/api/orders

  # reload without a restart: edit config.yaml (a route, a key) or deploy/demo-users.yaml,
  # then either (an invalid file is refused and the running configuration keeps serving)
  .venv/bin/gateway reload --pid-file {pid_file} --config config.yaml
  curl -s -X POST -H 'Authorization: Bearer demo-admin-key' {admin}/admin/reload
  # the steps of a signing-key rotation by reloads, with their earliest times
  .venv/bin/gateway keys rotate --config config.yaml

Browser sessions (cookie mode; the demo's cookies are plain-http, demo-only settings):
open {gw}/app/ in a browser. You are sent to the sign-in page; sign in as alice / wonderland
and land on the "legacy web app", which shows the identity headers the upstream received
(never the gateway's cookies). "Fire 20 parallel requests" sends 20 fetch() calls; after
the access cookie expires (tokens.access_ttl) they are all still answered 200, the gateway
refreshing the session itself. {gw}/auth/browser/devices lists your sessions and signs
devices out; "Sign out" ends the session everywhere. The same with curl:

  curl -si -c /tmp/gw-jar -X POST {gw}/auth/browser/login -H 'Content-Type: application/json' \\
    -d '{{"username":"alice","password":"wonderland"}}'
  curl -s -b /tmp/gw-jar {gw}/auth/browser/session
  curl -s -b /tmp/gw-jar {gw}/api/orders
  # a browser session from an identity provider's ID token (demo-idp, as above)
  ID_TOKEN=$(curl -s -X POST {idp}/token -d username=carol | field id_token)
  TYPE=urn:ietf:params:oauth:token-type:id_token
  curl -s -c /tmp/gw-jar -X POST {gw}/auth/browser/login -H 'Content-Type: application/json' \\
    -d "{{\\"subject_token\\":\\"$ID_TOKEN\\",\\"subject_token_type\\":\\"$TYPE\\"}}"

Sign in at an OpenID provider (demo-op: oidc-provider-mock, a third-party provider; DEMO
ONLY, it signs in whoever types a name): open {gw}/app/, pick "Sign in with Demo OP", choose
ada on the provider's form, and land back on the app as demo-op:ada (roles user, reports).
Delete the gateway's gw_at and gw_rt cookies (or wait for the session's end) and reload: you
come back signed in without a form (silent re-login at the provider). "Sign out" ends the
session here and goes on to the provider's end-session page. Ending the session at the
provider ({op}/oauth2/end_session) ends the gateway's sessions over the back channel. The
provider's logout token by hand, for user ada:

  TOKEN=$(curl -s -X POST {op}/demo/logout-token -d sub=ada -d aud=gateway-demo \\
    | field logout_token)
  curl -si -X POST {gw}/auth/backchannel-logout -d "logout_token=$TOKEN"   # 200: ada's sessions end
  curl -si -X POST {gw}/auth/backchannel-logout -d "logout_token=$TOKEN"   # 400: used before
  curl -s -H 'Authorization: Bearer demo-admin-key' {admin}/admin/audit     # backchannel_logout

Press Ctrl-C to stop.
"""


def main() -> int:
    # SIGTERM (a process manager, `timeout`) stops the demo like Ctrl-C: the children too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for port in (8080, 8081, 9000, 9100, 9200):
        if port_in_use(port):
            print(f"demo: port {port} is already in use; stop what listens there first")
            return 1
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "demo_upstream.py")], env=env
    )
    idp = subprocess.Popen([sys.executable, str(ROOT / "deploy" / "demo_idp.py")], env=env)
    backchannel = f"gateway-demo={GATEWAY}/auth/backchannel-logout"
    op = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "demo_op.py"), "--backchannel-logout", backchannel],
        env=env,
    )
    gateway = None
    try:
        if not wait_for_port(9000):
            print("demo: the echo upstream did not start")
            return 1
        if not wait_for_port(9100):
            print("demo: the demo identity provider did not start")
            return 1
        if not wait_for_port(9200):
            print("demo: the demo OpenID provider did not start (make install: oidc-provider-mock)")
            return 1
        command = [sys.executable, "-m", "gateway", "serve", "--config", str(CONFIG)]
        command += ["--pid-file", str(PID_FILE)]
        gateway = subprocess.Popen(command, env=env)
        if not wait_for_port(8080):
            print("demo: the gateway did not start (see the log above)")
            return 1
        pid_file = PID_FILE.relative_to(ROOT)
        print(
            WALKTHROUGH.format(gw=GATEWAY, admin=ADMIN, idp=IDP, op=OP, pid_file=pid_file),
            flush=True,
        )
        return gateway.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for process in (gateway, op, idp, upstream):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    raise SystemExit(main())
