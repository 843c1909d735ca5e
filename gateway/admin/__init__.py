"""The admin listener: API-key auth, the admin API, the operator actions it shares with the
CLI, and the web console (console/, a sub-application)."""
