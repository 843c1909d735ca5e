"""What the tests build on, one module a thing; the benchmark and the drills use it too.

Processes and Redis: `processes` (free ports, waiting for a port, a clean environment,
stopping child processes), `redis_servers` (a private redis-server), `redis_topology`
(replicas, Sentinel, Cluster), `repository` (the repository's paths), `waiting` (eventually:
a condition awaited within a deadline, never a fixed sleep).

The gateway under test: `gateway_settings` (settings to start from, login limits no test
reaches), `gateway_client` (GatewayClient, the typed test client of the gateway on a loopback
socket; logging in), `recording_upstream` (the backend that records what reached it),
`credential_files` (users, signing and sealing keys on disk), `clock` (a clock moved by hand),
`gateway_cli` (the `gateway` command in a child process), `stored_sessions` (sessions opened
and rotated in the store as the token service does).

Talking to it: `jwt_tokens` (tokens signed with the tests' keys, bent as needed), `raw_http`
(bytes on the wire), `browser_cookies` (browser mode, a hand-kept cookie jar),
`admin_access` (the admin key, the console), `identity_provider` (a fake OIDC provider).

Fixtures stay in tests/conftest.py: they start these things and clean them up.
"""
