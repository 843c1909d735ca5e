"""The admin listener: API-key auth, the admin API, and the operator actions it shares
with the CLI."""
