"""Federated login: identity providers' tokens exchanged for the gateway's own (RFC 8693).
The providers themselves (settings, keys, token verification) are gateway.tokens.providers,
provider_keys and provider_tokens, which the request path can use too."""
