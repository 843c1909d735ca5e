"""Demo echo upstream: answers every request with JSON describing the request it received,
and serves a small "legacy web app" at /app/ for browser sessions (cookie mode)."""

from __future__ import annotations

import argparse
import html

from aiohttp import web

IDENTITY_HEADERS = ("X-User-Id", "X-User-Roles", "X-Session-Id")

APP_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Legacy web app</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; margin: 40px auto; max-width: 760px;
         color: #1f2933; padding: 0 16px; }}
  table {{ border-collapse: collapse; margin: 12px 0 24px; }}
  th, td {{ text-align: left; padding: 6px 14px 6px 0; border-bottom: 1px solid #d9e2ec; }}
  code {{ background: #f0f4f8; padding: 1px 4px; border-radius: 3px; word-break: break-all; }}
  button {{ font: inherit; padding: 8px 14px; border-radius: 6px; border: 1px solid #2457c5;
           background: #2457c5; color: #fff; cursor: pointer; }}
  form {{ display: inline; }}
  .secondary {{ background: #fff; color: #2457c5; }}
  #statuses {{ display: flex; flex-wrap: wrap; gap: 6px; padding: 0; list-style: none; }}
  #statuses li {{ padding: 2px 8px; border-radius: 4px; background: #ecfdf3; color: #027a48; }}
  #statuses li.bad {{ background: #fef3f2; color: #b42318; }}
</style>
</head>
<body>
<h1>Legacy web app</h1>
<p>This page is served by the demo upstream, which knows nothing about tokens or cookies: it
trusts the identity headers the gateway adds.</p>
<h2>What the upstream received</h2>
<table id="identity">
{rows}
  <tr><th>Cookie</th><td><code id="cookie">{cookie}</code></td></tr>
</table>
<p>
  <button id="fire" type="button">Fire 20 parallel requests</button>
  <a href="/auth/browser/devices">Your devices</a> ·
  <form method="post" action="/auth/browser/logout">
    <button id="signout" class="secondary" type="submit">Sign out</button>
  </form>
</p>
<p id="summary"></p>
<ol id="statuses"></ol>
<script>
document.getElementById("fire").addEventListener("click", async () => {{
  const list = document.getElementById("statuses");
  const summary = document.getElementById("summary");
  list.textContent = "";
  summary.textContent = "running…";
  const options = {{credentials: "same-origin", headers: {{Accept: "application/json"}}}};
  const calls = Array.from({{length: 20}}, (_, i) =>
    fetch("/app/api/ping?i=" + i, options).then(r => r.status, () => "network error"));
  const statuses = await Promise.all(calls);
  for (const status of statuses) {{
    const item = document.createElement("li");
    item.textContent = status;
    if (status !== 200) item.className = "bad";
    list.appendChild(item);
  }}
  const ok = statuses.filter(s => s === 200).length;
  summary.textContent = ok + " of " + statuses.length + " answered 200";
  summary.dataset.done = "1";
}});
</script>
</body>
</html>
"""


async def echo(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_size": size,
        }
    )


async def legacy_app(request: web.Request) -> web.Response:
    """GET /app/: a page showing the identity headers (and cookies) this upstream received."""
    rows = "\n".join(
        f'  <tr><th>{name}</th><td><code id="{name.lower()}">'
        f"{html.escape(request.headers.get(name, '(none)'))}</code></td></tr>"
        for name in IDENTITY_HEADERS
    )
    cookie = html.escape(request.headers.get("Cookie", "(none)"))
    return web.Response(
        text=APP_PAGE.format(rows=rows, cookie=cookie),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/app/", legacy_app)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="demo echo upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
