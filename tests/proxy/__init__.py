"""The request path (gateway/proxy/): fast lane, routing, header policy, forwarding, streaming."""
