"""The admin web console on the admin listener (/admin/console/): sign-in with an admin key,
users' sessions, token and session revocation, the revocation view, the audit trail and a
status panel. Its pages and assets ship with the package (templates/, static/)."""
