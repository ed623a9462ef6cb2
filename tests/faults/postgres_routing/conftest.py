"""The routing fault tests share the integration fixtures (throwaway primary + hot standby, the in-process plane)."""

from tests.integration.postgres_routing.conftest import (  # noqa: F401
    pg_cluster,
    pg_cluster_module,
    system_pg_dsn,
)
