"""Test harness shipped inside the package (as asyncpg's ``_testbase``): real servers on free ports, cleaned up.

- ``ports``: free ports and waiting for a listener.
- ``postgres``: a throwaway PostgreSQL primary and hot standby (initdb / pg_basebackup as the ``postgres`` user).
- ``redis``: standalone Redis nodes and a Redis Cluster of 3 masters + 3 replicas.
- ``faultproxy``: a TCP proxy that drops, delays or cuts connections between a client and a server.
- ``proxy``: nexus-fast itself started as a subprocess from a config, for end-to-end tests.

Tests and ``bench/`` both use it. Where a test needs only one plain server it uses the machine's running
PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379); see ``system_postgres_dsn()`` / ``system_redis_address()``.
"""
