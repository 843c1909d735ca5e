"""Token work (gateway/tokens/): verification, bearer credentials, the revocation view and sync."""
