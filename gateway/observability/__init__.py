"""Below the planes: what every plane reports through. Metrics (one registry per process),
logs (setup, the batched access log), W3C trace context and OpenTelemetry spans, and the
counters' recent history for the console. Nothing here imports a plane.
"""
