"""The token service behind /auth/* and /.well-known/*: sessions, rotation, logins,
credential checkers, revocations."""
