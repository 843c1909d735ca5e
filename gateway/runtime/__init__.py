"""The process: serving and draining, worker supervision, lifetimes of the services,
metrics, logs and health."""
