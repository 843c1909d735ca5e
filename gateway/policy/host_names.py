"""Host names as routes and rules compare them."""

from __future__ import annotations


def normalize_host(host: str) -> str:
    """A Host header as routes compare it: without its port, in lower case, without one
    trailing dot.

    SECURITY: DNS names ignore case and a trailing dot names the same host, so the upstream
    (and any virtual hosting behind it) takes `API.Example.COM.` for `api.example.com`: the
    gateway must choose the same route for both, or a client could step around a host's
    stricter route.
    """
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    name = name.lower()
    return name[:-1] if name.endswith(".") else name
