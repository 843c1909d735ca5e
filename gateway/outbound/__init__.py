"""Below the planes: the gateway's own outgoing HTTP calls (identity providers' keys and
discovery, the login backend, WebSocket upgrades) share one client session from here.
Proxied requests use the request path's lean client (gateway.proxy.upstream) instead.
"""
