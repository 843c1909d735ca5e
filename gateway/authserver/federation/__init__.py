"""Federated login: identity providers' tokens exchanged for the gateway's own (RFC 8693)."""
