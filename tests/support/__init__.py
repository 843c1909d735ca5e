"""What the tests, the benchmark and the drills share: ports and child processes
(`processes`), a private redis-server (`redis_servers`) and replicated topologies
(`redis_topology`), the repository's paths (`repository`). Fixtures stay in
tests/conftest.py; this package holds no fixture."""
