"""Access tokens: keys, compact JWS, the verifier and the issuer, and the in-memory
revocation view with the sync that keeps it current."""
