"""HTTP handlers served by the gateway itself (no Redis code here: they call the services)."""
