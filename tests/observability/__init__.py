"""Metrics, logs, trace context and counter history (gateway/observability/)."""
