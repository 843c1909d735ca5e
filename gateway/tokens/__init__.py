"""Access tokens: keys, compact JWS, the verifier and the issuer, bearer credentials (RFC
6750), and the in-memory revocation view with the sync that keeps it current."""
