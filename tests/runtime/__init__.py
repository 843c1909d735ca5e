"""The process (gateway/runtime/): serving and draining, worker processes."""
