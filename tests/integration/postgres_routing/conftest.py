"""The routing tests' fixtures: see ``nexus_fast._testing.postgres_fixtures``."""

from nexus_fast._testing.postgres_fixtures import (  # noqa: F401
    pg_cluster,
    pg_cluster_module,
    system_pg_dsn,
)
