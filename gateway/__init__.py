"""Token-enforcing API gateway: JWT access tokens in front of unmodified HTTP backends."""

__version__ = "0.1.0"
